/* http_response: an incremental parser of one HTTP/1.x response to a POST.
 * It keeps the status, Retry-After and whether the connection may be reused,
 * and skips the body (Content-Length, chunked, or up to the close). A parser
 * is made once per connection with http_response_new(), reset before each
 * request, fed the bytes as they arrive, and freed with http_response_free(). */
#ifndef S3O_HTTP_RESPONSE_H
#define S3O_HTTP_RESPONSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct http_response;

/* How the final response's body is delimited (known once its head is read). */
enum http_response_framing {
	HTTP_RESPONSE_NO_BODY,	/* 204, 304 (or the head not read yet) */
	HTTP_RESPONSE_LENGTH,	/* Content-Length */
	HTTP_RESPONSE_CHUNKED,	/* Transfer-Encoding: chunked */
	HTTP_RESPONSE_TO_CLOSE, /* up to the close */
};

enum http_response_state {
	HTTP_RESPONSE_MORE,  /* incomplete: feed more bytes (or report the EOF) */
	HTTP_RESPONSE_DONE,  /* complete */
	HTTP_RESPONSE_ERROR, /* malformed: http_response_error() says why */
};

struct http_response *http_response_new(void) __attribute__((warn_unused_result));
void http_response_free(struct http_response *r);
void http_response_reset(struct http_response *r);

/* Parse up to len bytes; returns how many were used. Bytes left over once
 * the response is complete are not part of it (the caller should not reuse
 * a connection that sent them). */
size_t http_response_feed(struct http_response *r, const char *buf, size_t len);

/* The peer closed the connection: completes a body that runs to the close,
 * anything else incomplete becomes an error. */
void http_response_eof(struct http_response *r);

enum http_response_state http_response_state(const struct http_response *r);
long http_response_status(const struct http_response *r);
/* The Retry-After value (trimmed), or NULL when absent or over 63 bytes. */
const char *http_response_retry_after(const struct http_response *r);
/* The connection may carry another request after this complete response. */
bool http_response_keep_alive(const struct http_response *r);
/* Whether any byte of the response arrived yet (a reused connection the peer
 * closed before answering can be retried on a fresh one). */
bool http_response_started(const struct http_response *r);
enum http_response_framing http_response_framing(const struct http_response *r);
/* The body bytes of the final response read so far (chunk framing not
 * counted). */
uint64_t http_response_body_bytes(const struct http_response *r);
const char *http_response_error(const struct http_response *r);

#endif
