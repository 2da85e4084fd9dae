#include "http.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <event2/event_struct.h>

#include "clock.h"
#include "http1.h"

#define HTTP_CA_CACHE_S	   3600
#define HTTP_UPLOAD_BUFFER 16384

struct http_target {
	struct http1_target *plain; /* NULL: libcurl sends */
	uint64_t id;		    /* unique: what an easy handle was set up for */
	CURLU *url;		    /* parsed once, not for every POST */
	char *bad_url;		    /* or the text libcurl refused to parse: each POST fails */
	char *ca_file;		    /* NULL: the system's CAs */
	char *proxy, *noproxy;	    /* from the environment at creation, "" for none */
	struct curl_slist *headers; /* the fixed lines, for libcurl */
};

struct http_xfer {
	struct http_xfer *next, *prev; /* in the active list, or next in the free list */
	struct http *h;
	CURL *easy;
	uint64_t target_id; /* the target whose options easy holds, 0 for none */
	http_done_cb cb;
	bool (*may_send)(void *arg);
	void *arg;
	struct curl_slist extra; /* links the per-request header before the target's */
	char extra_buf[128];
	char retry_after[64];
	char errbuf[CURL_ERROR_SIZE];
};

struct http_sock {
	struct event ev; /* assigned in place: curl changes what it waits for on
			    every request, and this spares an allocation each time */
	short flags;	 /* of ev, 0 before the first assignment */
};

struct http {
	struct event_base *base;
	struct http1 *plain; /* http:// at an IP address */
	CURLM *multi;	     /* the rest */
	struct event *timer;
	struct http_xfer *free_list; /* finished transfers, easy handles kept for reuse */
	struct http_xfer *active_list;
	bool default_cainfo; /* libcurl has a CA file built in */
};

/* Take a transfer out of the multi handle and keep it for reuse. */
static void xfer_release(struct http *h, struct http_xfer *x)
{
	curl_multi_remove_handle(h->multi, x->easy);
	if (x->prev)
		x->prev->next = x->next;
	else
		h->active_list = x->next;
	if (x->next)
		x->next->prev = x->prev;
	x->prev = NULL;
	x->next = h->free_list;
	h->free_list = x;
}

/* The final response's Retry-After, as libcurl read it (trimmed), into
 * x->retry_after; the last one that fits when there are several. Copied
 * now: the easy handle is reused as soon as the transfer is released. */
static bool keep_retry_after(struct http_xfer *x)
{
	struct curl_header *hd;
	if (curl_easy_header(x->easy, "Retry-After", 0, CURLH_HEADER, -1, &hd) != CURLHE_OK)
		return false;
	for (size_t i = hd->amount; i-- > 0;) {
		if (curl_easy_header(x->easy, "Retry-After", i, CURLH_HEADER, -1, &hd) != CURLHE_OK)
			continue;
		size_t len = strlen(hd->value);
		if (len < sizeof(x->retry_after)) {
			memcpy(x->retry_after, hd->value, len + 1);
			return true;
		}
	}
	return false;
}

static void check_done(struct http *h)
{
	CURLMsg *msg;
	int left;
	while ((msg = curl_multi_info_read(h->multi, &left)) != NULL) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		struct http_xfer *x;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
		CURLcode rc = msg->data.result;
		struct http_result r = {0};
		curl_easy_getinfo(x->easy, CURLINFO_TOTAL_TIME, &r.seconds);
		if (rc == CURLE_OK) {
			curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &r.status);
			r.retry_after = keep_retry_after(x) ? x->retry_after : NULL;
		} else {
			r.error = x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc);
			r.aborted = rc == CURLE_ABORTED_BY_CALLBACK;
		}
		xfer_release(h, x);
		x->cb(&r, x->arg);
	}
}

static void sock_event_cb(evutil_socket_t fd, short what, void *arg)
{
	struct http *h = arg;
	int flags =
	    (what & EV_READ ? CURL_CSELECT_IN : 0) | (what & EV_WRITE ? CURL_CSELECT_OUT : 0);
	int running;
	curl_multi_socket_action(h->multi, fd, flags, &running);
	check_done(h);
}

static void timer_event_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct http *h = arg;
	int running;
	curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done(h);
}

static int socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	(void)easy;
	struct http *h = userp;
	struct http_sock *hs = socketp;
	if (what == CURL_POLL_REMOVE) {
		if (hs) {
			event_del(&hs->ev);
			free(hs);
			curl_multi_assign(h->multi, s, NULL);
		}
		return 0;
	}
	if (!hs) {
		hs = calloc(1, sizeof(*hs));
		if (!hs)
			return -1;
		curl_multi_assign(h->multi, s, hs);
	}
	short flags = EV_PERSIST | (what & CURL_POLL_IN ? EV_READ : 0) |
		      (what & CURL_POLL_OUT ? EV_WRITE : 0);
	if (flags == hs->flags)
		return 0;
	if (hs->flags)
		event_del(&hs->ev);
	hs->flags = flags;
	if (event_assign(&hs->ev, h->base, s, flags, sock_event_cb, h) != 0 ||
	    event_add(&hs->ev, NULL) != 0)
		return -1;
	return 0;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	(void)multi;
	struct http *h = userp;
	if (timeout_ms < 0) {
		evtimer_del(h->timer);
		return 0;
	}
	struct timeval tv = clock_tv_ms((uint64_t)timeout_ms);
	evtimer_add(h->timer, &tv);
	return 0;
}

static int prereq_cb(void *clientp, char *primary_ip, char *local_ip, int primary_port,
		     int local_port)
{
	(void)primary_ip;
	(void)local_ip;
	(void)primary_port;
	(void)local_port;
	struct http_xfer *x = clientp;
	return x->may_send(x->arg) ? CURL_PREREQFUNC_OK : CURL_PREREQFUNC_ABORT;
}

static size_t discard_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	(void)ptr;
	(void)userdata;
	return size * nmemb;
}

struct http *http_new(struct event_base *base, unsigned max_connections)
{
	struct http *h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->base = base;
	h->plain = http1_new(base, max_connections);
	h->multi = curl_multi_init();
	h->timer = evtimer_new(base, timer_event_cb, h);
	if (!h->plain || !h->multi || !h->timer) {
		http_free(h);
		return NULL;
	}
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
	curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, (long)max_connections);
	/* Whether libcurl has a CA file built in, to leave out its CA directory. */
	CURL *probe = curl_easy_init();
	char *cainfo = NULL;
	if (probe && curl_easy_getinfo(probe, CURLINFO_CAINFO, &cainfo) == CURLE_OK && cainfo &&
	    cainfo[0])
		h->default_cainfo = true;
	curl_easy_cleanup(probe);
	return h;
}

void http_free(struct http *h)
{
	if (!h)
		return;
	http1_free(h->plain);
	/* Running transfers are abandoned: remove them before the multi goes. */
	while (h->active_list)
		xfer_release(h, h->active_list);
	while (h->free_list) {
		struct http_xfer *x = h->free_list;
		h->free_list = x->next;
		curl_easy_cleanup(x->easy);
		free(x);
	}
	curl_multi_cleanup(h->multi);
	if (h->timer)
		event_free(h->timer);
	free(h);
}

static struct http_xfer *xfer_get(struct http *h)
{
	struct http_xfer *x = h->free_list;
	if (x) {
		h->free_list = x->next;
		return x;
	}
	x = calloc(1, sizeof(*x));
	if (!x)
		return NULL;
	x->easy = curl_easy_init();
	if (!x->easy) {
		free(x);
		return NULL;
	}
	x->h = h;
	return x;
}

/* The proxy libcurl would find in the environment for a URL with this
 * scheme: <scheme>_proxy, in capitals too except HTTP_PROXY (which a CGI
 * client could set), then all_proxy or ALL_PROXY. "" for none. Read once
 * here, where libcurl would read it again for every transfer. */
static char *env_proxy(const char *scheme)
{
	char name[32];
	int n = snprintf(name, sizeof(name), "%s_proxy", scheme);
	const char *v = n > 0 && (size_t)n < sizeof(name) ? getenv(name) : NULL;
	if (!v && n > 0 && (size_t)n < sizeof(name) && strcmp(scheme, "http") != 0) {
		for (char *c = name; *c; c++)
			*c = (char)toupper((unsigned char)*c);
		v = getenv(name);
	}
	if (!v)
		v = getenv("all_proxy");
	if (!v)
		v = getenv("ALL_PROXY");
	return strdup(v ? v : "");
}

/* The hosts that go without a proxy, as libcurl reads them. */
static char *env_noproxy(void)
{
	const char *v = getenv("no_proxy");
	if (!v)
		v = getenv("NO_PROXY");
	return strdup(v ? v : "");
}

static bool header_add(struct curl_slist **list, const char *line)
{
	struct curl_slist *l = curl_slist_append(*list, line);
	if (l)
		*list = l;
	return l != NULL;
}

struct http_target *http_target_new(const char *url, const char *const *header_lines, size_t n,
				    const char *ca_file)
{
	struct http_target *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	static uint64_t last_id;
	t->id = ++last_id;
	t->plain = http1_target_new(url, header_lines, n);
	if (t->plain)
		return t;
	/* Parsed with the flags libcurl gives a CURLOPT_URL; one it refuses is
	 * kept as text, for each attempt to fail as it did before. */
	if (!(t->url = curl_url()))
		goto fail;
	if (curl_url_set(t->url, CURLUPART_URL, url,
			 CURLU_GUESS_SCHEME | CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK) {
		curl_url_cleanup(t->url);
		t->url = NULL;
		if (!(t->bad_url = strdup(url)))
			goto fail;
	}
	if (ca_file && ca_file[0] && !(t->ca_file = strdup(ca_file)))
		goto fail;
	char *scheme = NULL;
	if (t->url && curl_url_get(t->url, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK) {
		t->proxy = env_proxy(scheme);
		t->noproxy = env_noproxy();
		curl_free(scheme);
		if (!t->proxy || !t->noproxy)
			goto fail;
	}
	for (size_t i = 0; i < n; i++)
		if (!header_add(&t->headers, header_lines[i]))
			goto fail;
	/* "Expect:" with no value: no 100-continue round trip before a large body. */
	if (!header_add(&t->headers, "Expect:"))
		goto fail;
	return t;
fail:
	http_target_free(t);
	return NULL;
}

void http_target_free(struct http_target *t)
{
	if (!t)
		return;
	http1_target_free(t->plain);
	curl_url_cleanup(t->url);
	free(t->bad_url);
	free(t->proxy);
	free(t->noproxy);
	free(t->ca_file);
	curl_slist_free_all(t->headers);
	free(t);
}

bool http_target_builtin(const struct http_target *t)
{
	return t->plain != NULL;
}

/* Give x's easy handle the options every POST to t has. An easy handle
 * keeps its options from one transfer to the next, so this runs when it
 * last served another target (or none), not before every POST. */
static void easy_setup(const struct http *h, struct http_xfer *x, const struct http_target *t)
{
	CURL *e = x->easy;
	if (x->target_id)
		curl_easy_reset(e);
	x->target_id = t->id;
	curl_easy_setopt(e, CURLOPT_PRIVATE, x);
	if (t->url)
		curl_easy_setopt(e, CURLOPT_CURLU, t->url);
	else
		curl_easy_setopt(e, CURLOPT_URL, t->bad_url);
	if (t->proxy) {
		/* Both set: libcurl looks in the environment no more. */
		curl_easy_setopt(e, CURLOPT_PROXY, t->proxy);
		curl_easy_setopt(e, CURLOPT_NOPROXY, t->noproxy);
	}
	curl_easy_setopt(e, CURLOPT_POST, 1L);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	/* HTTP/1.1 only, as the built-in client: Debian 12's libcurl (7.88) fails
	 * HTTP/2 streams when a receiver answers before reading the whole body
	 * and resets the stream with NO_ERROR, as RFC 9113 allows, and fails
	 * streams queued on the same connection with it. */
	curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	if (t->ca_file)
		curl_easy_setopt(e, CURLOPT_CAINFO, t->ca_file);
	if (t->ca_file || h->default_cainfo)
		/* CAs from a file alone: libcurl then keeps the store it loaded for
		 * the next connections, where a CA directory as well (Debian's
		 * libcurl has /etc/ssl/certs built in) has it load the file again,
		 * in full, for every new connection. */
		curl_easy_setopt(e, CURLOPT_CAPATH, NULL);
	/* Kept an hour: a renewed CA file is read again without a restart. */
	curl_easy_setopt(e, CURLOPT_CA_CACHE_TIMEOUT, (long)HTTP_CA_CACHE_S);
	/* libcurl copies what it sends over TLS into an upload buffer that it
	 * allocates for each transfer and frees at its end: 64 KiB unless told,
	 * where a request with its body fits in 16 KiB, the least it takes. */
	curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, (long)HTTP_UPLOAD_BUFFER);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard_cb);
	curl_easy_setopt(e, CURLOPT_PREREQDATA, x);
}

int http_post(struct http *h, const struct http_target *t, const struct http_request *req,
	      http_done_cb cb, void *arg)
{
	if (t->plain)
		return http1_post(h->plain, t->plain, req, cb, arg);
	struct http_xfer *x = xfer_get(h);
	if (!x)
		return -1;
	x->cb = cb;
	x->may_send = req->may_send;
	x->arg = arg;
	x->errbuf[0] = '\0';

	struct curl_slist *headers = t->headers;
	if (req->extra_header) {
		snprintf(x->extra_buf, sizeof(x->extra_buf), "%s", req->extra_header);
		x->extra.data = x->extra_buf;
		x->extra.next = headers;
		headers = &x->extra;
	}
	CURL *e = x->easy;
	if (x->target_id != t->id)
		easy_setup(h, x, t);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->len);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)req->timeout_ms);
	curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, req->may_send ? prereq_cb : NULL);
	if (curl_multi_add_handle(h->multi, e) != CURLM_OK) {
		x->next = h->free_list;
		h->free_list = x;
		return -1;
	}
	x->prev = NULL;
	x->next = h->active_list;
	if (x->next)
		x->next->prev = x;
	h->active_list = x;
	return 0;
}
