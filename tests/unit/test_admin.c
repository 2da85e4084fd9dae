/* admin: the real server on 127.0.0.1 (port 0), driven by a raw HTTP client on the same
 * event loop, so every byte of the answer is checked: status, headers, body, HEAD, 404,
 * 405 with Allow, /readyz both ways, keep-alive, and the errors of admin_new(). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "admin.h"
#include "metrics.h"

#define WATCHDOG_S 5

struct fixture {
	struct event_base *base;
	struct admin *admin;
	int port;
	bool ready;
	const char *why;
	unsigned metrics_calls;
	char *last; /* the last answer read (struct response.raw), freed by the next or teardown */
};

struct response {
	char *raw; /* the whole answer, NUL-terminated; owned by the fixture */
	int status;
	const char *body; /* into raw, after the blank line */
	size_t body_len;
};

struct exchange {
	struct event_base *base;
	struct evbuffer *in;
	bool done;
	bool timed_out;
	bool error;
};

/* ---- server side callbacks ------------------------------------------------------------- */

static void metrics_cb(struct metrics_buf *out, void *arg)
{
	struct fixture *f = arg;
	struct metrics_label l[] = {{"endpoint", "st\"or\\age"}};
	f->metrics_calls++;
	metrics_header(out, "test_requests_total", "Requests.", "counter");
	metrics_sample_uint(out, "test_requests_total", l, 1, f->metrics_calls);
}

static bool ready_cb(const char **why, void *arg)
{
	struct fixture *f = arg;
	if (!f->ready)
		*why = f->why;
	return f->ready;
}

static const struct admin_callbacks callbacks = {metrics_cb, ready_cb};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char err[256];
	if (!f)
		return -1;
	f->base = event_base_new();
	f->ready = true;
	f->admin = admin_new(f->base, "127.0.0.1:0", &callbacks, f, err, sizeof(err));
	if (!f->admin) {
		print_error("admin_new: %s\n", err);
		event_base_free(f->base);
		free(f);
		return -1;
	}
	f->port = admin_port(f->admin);
	*state = f;
	return f->port > 0 ? 0 : -1;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	admin_free(f->admin);
	event_base_free(f->base);
	free(f->last);
	free(f);
	return 0;
}

/* ---- raw client ------------------------------------------------------------------------ */

static void client_read_cb(struct bufferevent *bev, void *arg)
{
	struct exchange *x = arg;
	evbuffer_add_buffer(x->in, bufferevent_get_input(bev));
}

static void client_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct exchange *x = arg;
	if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
		return;
	evbuffer_add_buffer(x->in, bufferevent_get_input(bev));
	x->error = (what & BEV_EVENT_ERROR) != 0;
	x->done = true;
	event_base_loopbreak(x->base);
}

static void watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct exchange *x = arg;
	x->timed_out = true;
	event_base_loopbreak(x->base);
}

/* Send raw to addr:port, run the loop until the server closes, parse the answer. */
static void exchange_at(struct fixture *f, const char *addr, int port, const char *raw,
			struct response *r)
{
	struct sockaddr_storage ss = {0};
	socklen_t sl;
	if (strchr(addr, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		assert_int_equal(inet_pton(AF_INET6, addr, &s6->sin6_addr), 1);
		sl = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		assert_int_equal(inet_pton(AF_INET, addr, &s4->sin_addr), 1);
		sl = sizeof(*s4);
	}

	struct exchange x = {.base = f->base, .in = evbuffer_new()};
	struct bufferevent *bev = bufferevent_socket_new(f->base, -1, BEV_OPT_CLOSE_ON_FREE);
	struct event *dog = evtimer_new(f->base, watchdog_cb, &x);
	struct timeval tv = {WATCHDOG_S, 0};
	assert_non_null(x.in);
	assert_non_null(bev);
	assert_non_null(dog);
	bufferevent_setcb(bev, client_read_cb, NULL, client_event_cb, &x);
	assert_int_equal(bufferevent_enable(bev, EV_READ | EV_WRITE), 0);
	assert_int_equal(bufferevent_socket_connect(bev, (struct sockaddr *)&ss, (int)sl), 0);
	assert_int_equal(bufferevent_write(bev, raw, strlen(raw)), 0);
	evtimer_add(dog, &tv);
	while (!x.done && !x.timed_out)
		event_base_dispatch(f->base);
	event_free(dog);
	bufferevent_free(bev);

	size_t n = evbuffer_get_length(x.in);
	free(f->last);
	f->last = r->raw = malloc(n + 1);
	assert_non_null(r->raw);
	evbuffer_remove(x.in, r->raw, n);
	r->raw[n] = '\0';
	evbuffer_free(x.in);
	if (x.timed_out || x.error) {
		print_error("request %s: %s; got so far:\n%s\n", raw,
			    x.timed_out ? "no answer within the watchdog" : "connection error",
			    r->raw);
		fail();
	}

	r->status = 0;
	if (sscanf(r->raw, "HTTP/1.%*d %d ", &r->status) != 1) {
		print_error("request %s: not an HTTP answer:\n%s\n", raw, r->raw);
		fail();
	}
	const char *blank = strstr(r->raw, "\r\n\r\n");
	assert_non_null(blank);
	r->body = blank + 4;
	r->body_len = n - (size_t)(r->body - r->raw);
}

static void exchange(struct fixture *f, const char *raw, struct response *r)
{
	exchange_at(f, "127.0.0.1", f->port, raw, r);
}

/* The value of header name in the head of r (copied into out), or NULL. */
static const char *header(const struct response *r, const char *name, char *out, size_t n)
{
	size_t nl = strlen(name);
	for (const char *line = strstr(r->raw, "\r\n"); line && line + 2 < r->body;
	     line = strstr(line + 2, "\r\n")) {
		const char *h = line + 2;
		if (strncasecmp(h, name, nl) == 0 && h[nl] == ':') {
			const char *v = h + nl + 1;
			while (*v == ' ')
				v++;
			size_t vl = strcspn(v, "\r");
			snprintf(out, n, "%.*s", (int)vl, v);
			return out;
		}
	}
	return NULL;
}

static void expect_header(const struct response *r, const char *name, const char *want)
{
	char v[256];
	const char *got = header(r, name, v, sizeof(v));
	if (!got || strcmp(got, want) != 0) {
		print_error("header %s: expected \"%s\", got %s%s%s in:\n%s\n", name, want,
			    got ? "\"" : "", got ? got : "none", got ? "\"" : "", r->raw);
		fail();
	}
}

static void expect(struct fixture *f, const char *raw, int status, const char *type,
		   const char *body)
{
	struct response r;
	exchange(f, raw, &r);
	if (r.status != status) {
		print_error("request %s: expected status %d, got %d:\n%s\n", raw, status, r.status,
			    r.raw);
		fail();
	}
	if (type)
		expect_header(&r, "Content-Type", type);
	if (body) {
		char len[32];
		snprintf(len, sizeof(len), "%zu", strlen(body));
		expect_header(&r, "Content-Length", len);
		if (r.body_len != strlen(body) || memcmp(r.body, body, r.body_len) != 0) {
			print_error("request %s: expected body \"%s\", got \"%.*s\"\n", raw, body,
				    (int)r.body_len, r.body);
			fail();
		}
	}
}

/* ---- tests ----------------------------------------------------------------------------- */

#define TEXT "text/plain; charset=utf-8"
#define GET(path)                                                                                  \
	"GET " path " HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: test\r\nConnection: "             \
	"close\r\n\r\n"

static void test_metrics(void **state)
{
	struct fixture *f = *state;
	const char *want = "# HELP test_requests_total Requests.\n"
			   "# TYPE test_requests_total counter\n"
			   "test_requests_total{endpoint=\"st\\\"or\\\\age\"} 1\n";
	expect(f, GET("/metrics"), 200, METRICS_CONTENT_TYPE, want);
	assert_int_equal(f->metrics_calls, 1);

	/* A query string is ignored; the callback runs on every scrape. */
	expect(f, GET("/metrics?name[]=x"), 200, METRICS_CONTENT_TYPE,
	       "# HELP test_requests_total Requests.\n"
	       "# TYPE test_requests_total counter\n"
	       "test_requests_total{endpoint=\"st\\\"or\\\\age\"} 2\n");

	struct response r;
	exchange(f, GET("/metrics"), &r);
	expect_header(&r, "Cache-Control", "no-store");
}

static void test_head(void **state)
{
	struct fixture *f = *state;
	struct response r;
	exchange(f, "HEAD /metrics HTTP/1.0\r\n\r\n", &r);
	assert_int_equal(r.status, 200);
	expect_header(&r, "Content-Type", METRICS_CONTENT_TYPE);
	char len[32];
	/* The length of the GET body, "...{endpoint=...} 1\n", and no body at all. */
	snprintf(len, sizeof(len), "%zu",
		 strlen("# HELP test_requests_total Requests.\n"
			"# TYPE test_requests_total counter\n"
			"test_requests_total{endpoint=\"st\\\"or\\\\age\"} 1\n"));
	expect_header(&r, "Content-Length", len);
	assert_int_equal(r.body_len, 0);

	exchange(f, "HEAD /healthz HTTP/1.0\r\n\r\n", &r);
	assert_int_equal(r.status, 200);
	expect_header(&r, "Content-Length", "3");
	assert_int_equal(r.body_len, 0);
}

static void test_healthz(void **state)
{
	struct fixture *f = *state;
	expect(f, GET("/healthz"), 200, TEXT, "ok\n");
	expect(f, "GET /healthz HTTP/1.0\r\n\r\n", 200, TEXT, "ok\n");
	f->ready = false; /* health does not depend on readiness */
	f->why = "database down";
	expect(f, GET("/healthz"), 200, TEXT, "ok\n");
}

static void test_readyz(void **state)
{
	struct fixture *f = *state;
	expect(f, GET("/readyz"), 200, TEXT, "ready\n");

	f->ready = false;
	f->why = "database connection down";
	expect(f, GET("/readyz"), 503, TEXT, "not ready: database connection down\n");

	f->why = "line one\nline two\r";
	expect(f, GET("/readyz"), 503, TEXT, "not ready: line one line two \n");

	f->why = NULL;
	expect(f, GET("/readyz"), 503, TEXT, "not ready: unknown reason\n");

	f->ready = true;
	expect(f, GET("/readyz"), 200, TEXT, "ready\n");
}

static void test_not_found(void **state)
{
	struct fixture *f = *state;
	expect(f, GET("/"), 404, TEXT, "not found\n");
	expect(f, GET("/metrics/"), 404, TEXT, "not found\n");
	expect(f, GET("/metricsx"), 404, TEXT, "not found\n");
	expect(f, GET("/healthz/x"), 404, TEXT, "not found\n");
	expect(f, "POST /nope HTTP/1.0\r\nContent-Length: 0\r\n\r\n", 404, TEXT, "not found\n");
	assert_int_equal(f->metrics_calls, 0);
}

static void test_method_not_allowed(void **state)
{
	struct fixture *f = *state;
	const char *methods[] = {"POST /metrics", "PUT /healthz", "DELETE /readyz",
				 "OPTIONS /metrics", "PATCH /readyz"};
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		char raw[256];
		snprintf(raw, sizeof(raw),
			 "%s HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
			 "Connection: close\r\n\r\n",
			 methods[i]);
		struct response r;
		exchange(f, raw, &r);
		if (r.status != 405) {
			print_error("%s: expected 405, got %d:\n%s\n", methods[i], r.status, r.raw);
			fail();
		}
		expect_header(&r, "Allow", "GET, HEAD");
	}
	assert_int_equal(f->metrics_calls, 0);
}

static void test_keep_alive(void **state)
{
	struct fixture *f = *state;
	struct response r;
	/* Two requests on one connection; the server closes after the second. */
	exchange(f,
		 "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
		 "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
		 &r);
	assert_int_equal(r.status, 200);
	const char *second = strstr(r.raw + 1, "HTTP/1.1 200");
	assert_non_null(second);
	assert_non_null(strstr(r.raw, "\r\n\r\nok\n"));
	assert_non_null(strstr(second, "\r\n\r\nready\n"));
}

static void test_port_in_use(void **state)
{
	struct fixture *f = *state;
	char addr[64], err[256], want[128];

	/* A port held by another admin server. */
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", f->port);
	struct admin *a = admin_new(f->base, addr, &callbacks, f, err, sizeof(err));
	assert_null(a);
	snprintf(want, sizeof(want), "cannot listen on %s: %s", addr, strerror(EADDRINUSE));
	assert_string_equal(err, want);

	/* A port held by a plain listening socket (no SO_REUSEADDR). */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sin);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(fd, 1), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", ntohs(sin.sin_port));
	a = admin_new(f->base, addr, &callbacks, f, err, sizeof(err));
	close(fd);
	assert_null(a);
	snprintf(want, sizeof(want), "cannot listen on %s: %s", addr, strerror(EADDRINUSE));
	assert_string_equal(err, want);

	/* The server still answers. */
	expect(f, GET("/healthz"), 200, TEXT, "ok\n");
}

static void test_bad_addresses(void **state)
{
	struct fixture *f = *state;
	const char *bad[] = {"localhost",    "127.0.0.1:",   "127.0.0.1:65536", "127.0.0.1:123456",
			     "127.0.0.1:9x", "127.0.0.1:-1", "::1:9464",	"[::1]",
			     "[::1]9464",    "[]:9464",	     ":9464",		"127.0.0.1: 9464"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char err[256] = "unchanged", want[256];
		struct admin *a = admin_new(f->base, bad[i], &callbacks, f, err, sizeof(err));
		snprintf(want, sizeof(want), "cannot listen on %s: bad address", bad[i]);
		if (a || strncmp(err, want, strlen(want)) != 0) {
			print_error("\"%s\": expected NULL and \"%s...\", got %p and \"%s\"\n",
				    bad[i], want, (void *)a, err);
			admin_free(a);
			fail();
		}
	}

	/* A non-local address: the error comes from bind(). */
	char err[256];
	struct admin *a = admin_new(f->base, "192.0.2.1:0", &callbacks, f, err, sizeof(err));
	char want[256];
	assert_null(a);
	snprintf(want, sizeof(want), "cannot listen on 192.0.2.1:0: %s", strerror(EADDRNOTAVAIL));
	assert_string_equal(err, want);
	/* A tiny err buffer is truncated, not overrun; NULL is accepted. */
	char tiny[8];
	assert_null(admin_new(f->base, "x", &callbacks, f, tiny, sizeof(tiny)));
	assert_string_equal(tiny, "cannot ");
	assert_null(admin_new(f->base, "x", &callbacks, f, NULL, 0));
}

static void test_off(void **state)
{
	struct fixture *f = *state;
	char err[64] = "unchanged";
	struct admin *a = admin_new(f->base, "", &callbacks, f, err, sizeof(err));
	assert_non_null(a);
	assert_string_equal(err, "");
	assert_int_equal(admin_port(a), 0);
	admin_free(a);
	a = admin_new(f->base, NULL, NULL, NULL, err, sizeof(err));
	assert_non_null(a);
	assert_int_equal(admin_port(a), 0);
	admin_free(a);
	admin_free(NULL);
	assert_int_equal(admin_port(NULL), 0);
}

static void test_no_callbacks(void **state)
{
	struct fixture *f = *state;
	char err[256];
	struct admin *a = admin_new(f->base, "127.0.0.1:0", NULL, NULL, err, sizeof(err));
	assert_non_null(a);
	int port = admin_port(a);
	assert_true(port > 0 && port != f->port);

	struct response r;
	exchange_at(f, "127.0.0.1", port, GET("/metrics"), &r);
	assert_int_equal(r.status, 200);
	expect_header(&r, "Content-Length", "0");
	exchange_at(f, "127.0.0.1", port, GET("/readyz"), &r);
	assert_int_equal(r.status, 200);
	admin_free(a);
}

static void test_ipv6_and_names(void **state)
{
	struct fixture *f = *state;
	char err[256];
	struct admin *a = admin_new(f->base, "localhost:0", &callbacks, f, err, sizeof(err));
	if (!a) {
		print_error("localhost:0: %s\n", err);
		fail();
	}
	struct response r;
	exchange_at(f, "127.0.0.1", admin_port(a), GET("/healthz"), &r);
	assert_int_equal(r.status, 200);
	admin_free(a);

	a = admin_new(f->base, "[::1]:0", &callbacks, f, err, sizeof(err));
	if (!a) {
		/* No IPv6 loopback here (a container without IPv6): only the message. */
		assert_non_null(strstr(err, "cannot listen on [::1]:0: "));
		skip();
	}
	exchange_at(f, "::1", admin_port(a), GET("/readyz"), &r);
	assert_int_equal(r.status, 200);
	admin_free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_metrics, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_head, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_healthz, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_readyz, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_not_found, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_method_not_allowed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_keep_alive, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_port_in_use, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_addresses, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_off, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_no_callbacks, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ipv6_and_names, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
