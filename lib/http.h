/* http: concurrent POSTs driven by a libevent loop: through the built-in
 * HTTP/1.1 client (http1.h) for http:// URLs at an IP address, with libcurl
 * multi for the rest. http_new() binds to an event_base; http_free()
 * cancels what is running (without callbacks) and must run before the
 * event_base is freed. A target is where POSTs go and with which fixed
 * headers; it belongs to its caller and to no struct http. */
#ifndef S3O_HTTP_H
#define S3O_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

struct http;
struct http_target;

struct http_request {
	const char *body; /* not copied: valid until the callback */
	size_t len;
	const char *extra_header; /* one "Name: value" for this request (copied), or NULL */
	uint64_t timeout_ms;
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

/* Called once per request from the loop, never from inside http_post().
 * res and what it points to are valid only during the call. */
typedef void (*http_done_cb)(const struct http_result *res, void *arg);

struct http *http_new(struct event_base *base, unsigned max_connections)
    __attribute__((warn_unused_result));
void http_free(struct http *h);

/* A target for url with n fixed header lines ("Name: value") sent on every
 * POST, and ca_file (NULL or "" = the system's CAs) for https. Decides once
 * which client serves url and prepares what it needs; copies url, the lines
 * and ca_file. NULL when out of memory. Free it with http_target_free()
 * once no POST to it is running (http_free() ends those); NULL is a no-op. */
struct http_target *http_target_new(const char *url, const char *const *header_lines, size_t n,
				    const char *ca_file) __attribute__((warn_unused_result));
void http_target_free(struct http_target *t);

/* Start a POST of req to t; cb(res, arg) reports how it ended. 0, or -1
 * when it could not start (no callback then). */
int http_post(struct http *h, const struct http_target *t, const struct http_request *req,
	      http_done_cb cb, void *arg) __attribute__((warn_unused_result));

/* Whether POSTs to the target go through the built-in HTTP/1.1 client
 * rather than libcurl (for the start-up log). */
bool http_target_builtin(const struct http_target *t);

#endif
