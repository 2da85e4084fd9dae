/* http1: POSTs over plain HTTP/1.1 keep-alive connections, on a libevent
 * loop, for endpoints at an http:// URL with a numeric IP address. It does
 * per request what a POST needs and no more: one write, one read, no
 * re-parse of the URL, where libcurl sets up a whole transfer each time and
 * that cost dominates the daemon's own work on the hot path. http.c sends
 * everything else through libcurl.
 * http1_new() binds to an event_base; http1_free() closes every connection
 * and drops running requests without callbacks. A target (a URL parsed once
 * and its request head) belongs to its caller and to no client. */
#ifndef S3O_HTTP1_H
#define S3O_HTTP1_H

#include <stdbool.h>
#include <stddef.h>

#include <event2/event.h>

#include "http.h"

struct http1;
struct http1_target;

/* max_idle: idle connections kept open for reuse, all URLs together; the
 * connections to one URL serve every target made for it. */
struct http1 *http1_new(struct event_base *base, unsigned max_idle)
    __attribute__((warn_unused_result));
void http1_free(struct http1 *c);

/* A target for url and its fixed header lines ("Name: value", copied), or
 * NULL when this client does not take url: anything but http:// at a
 * numeric IPv4 or IPv6 host without user name or password, or any URL when
 * the environment names a proxy for http:// (http_proxy, all_proxy,
 * ALL_PROXY; libcurl applies it). NULL too when out of memory: libcurl can
 * still send it. Free with http1_target_free() (NULL is a no-op) once no
 * POST to it is running. */
struct http1_target *http1_target_new(const char *url, const char *const *header_lines, size_t n)
    __attribute__((warn_unused_result));
void http1_target_free(struct http1_target *t);

/* As http_post(). */
int http1_post(struct http1 *c, const struct http1_target *t, const struct http_request *req,
	       http_done_cb cb, void *arg) __attribute__((warn_unused_result));

#endif
