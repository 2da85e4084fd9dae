/* http: concurrent POSTs driven by a libevent loop: through http1 for
 * http:// URLs at an IP address, with libcurl multi for the rest.
 * http_new() binds to an event_base; http_free() cancels what is running
 * (without callbacks) and must run before the event_base is freed. The
 * request's url, body and headers must stay valid until its callback. */
#ifndef S3O_HTTP_H
#define S3O_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>
#include <event2/event.h>

struct http;

struct http_request {
	const char *url;
	const char *body;
	size_t len;
	const struct curl_slist *headers; /* shared, static per endpoint */
	const char *extra_header;	  /* one per-request header (copied), or NULL */
	uint64_t timeout_ms;
	const char *ca_file; /* NULL or "" = system CAs */
	/* Asked once connected, just before the request is sent: false cancels
	 * it unsent (the result then has aborted set). NULL = always send. */
	bool (*may_send)(void *arg);
};

struct http_result {
	long status;		 /* HTTP status, 0 when there was no response */
	const char *error;	 /* transport error text when status is 0 */
	const char *retry_after; /* Retry-After header value, or NULL */
	double seconds;		 /* duration of the whole request */
	bool aborted;		 /* cancelled unsent by may_send */
};

/* Called once per request from the loop, never from inside http_post(). */
typedef void (*http_done_cb)(const struct http_result *res, void *arg);

struct http *http_new(struct event_base *base, unsigned max_connections)
    __attribute__((warn_unused_result));
void http_free(struct http *h);

int http_post(struct http *h, const struct http_request *req, http_done_cb cb, void *arg)
    __attribute__((warn_unused_result));

/* Whether POSTs to url go through the built-in HTTP/1.1 client (http1.h)
 * rather than libcurl. */
bool http_builtin(struct http *h, const char *url);

#endif
