/* http1: POSTs over plain HTTP/1.1 keep-alive connections, on a libevent
 * loop, for endpoints at an http:// URL with a numeric IP address. It does
 * per request what a POST needs and no more: one write, one read, no
 * re-parse of the URL, where libcurl sets up a whole transfer each time and
 * that cost dominates the daemon's own work on the hot path. http.c sends
 * everything else through libcurl.
 * http1_new() binds to an event_base; http1_free() closes every connection
 * and drops running requests without callbacks. */
#ifndef S3O_HTTP1_H
#define S3O_HTTP1_H

#include <stdbool.h>

#include <event2/event.h>

#include "http.h"

struct http1;

/* max_idle: idle connections kept open for reuse, all targets together.
 * When the environment names a proxy for http:// (http_proxy, all_proxy,
 * ALL_PROXY), the client takes no URL, so libcurl applies the proxy. */
struct http1 *http1_new(struct event_base *base, unsigned max_idle)
    __attribute__((warn_unused_result));
void http1_free(struct http1 *c);

/* Whether this client sends to url: http://, a numeric IPv4 or IPv6 host,
 * no user name or password. The answer is kept per URL. */
bool http1_takes(struct http1 *c, const char *url);

/* As http_post() (0, or -1 when the request could not start), or 1 when
 * the url is not one this client takes: send it with libcurl then. */
int http1_post(struct http1 *c, const struct http_request *req, http_done_cb cb, void *arg)
    __attribute__((warn_unused_result));

#endif
