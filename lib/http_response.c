#include "http_response.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Longest line kept; the rest of a longer one is skipped (only the status
 * line and a few headers are read, and their values are short). */
#define HTTP_RESPONSE_LINE_MAX 256
/* Status line, headers and trailers together, 1xx responses included. */
#define HTTP_RESPONSE_HEAD_MAX (64 * 1024)
#define HTTP_RESPONSE_SIZE_MAX (UINT64_C(1) << 62)

enum step {
	S_STATUS,
	S_HEADER,
	S_BODY_LENGTH,
	S_CHUNK_SIZE,
	S_CHUNK_DATA,
	S_CHUNK_END,
	S_TRAILER,
	S_BODY_EOF,
	S_DONE,
	S_ERROR,
};

struct http_response {
	enum step step;
	long status;
	bool started, http10, keep_alive_token, close_token, chunked, other_coding, has_length;
	uint64_t length, remaining, body_bytes;
	enum http_response_framing framing;
	size_t head_bytes;
	char line[HTTP_RESPONSE_LINE_MAX];
	size_t line_len;
	bool line_long, cr, bad_byte;
	/* The last field line, kept until the next line shows it is not folded
	 * (RFC 9112 5.2: an obs-fold is read as a space). */
	char field[HTTP_RESPONSE_LINE_MAX];
	size_t field_len;
	bool field_long;
	char retry_after[64];
	bool has_retry_after;
	const char *error;
};

struct http_response *http_response_new(void)
{
	struct http_response *r = malloc(sizeof(*r));
	if (r)
		http_response_reset(r);
	return r;
}

void http_response_free(struct http_response *r)
{
	free(r);
}

static void reset_head(struct http_response *r)
{
	r->status = 0;
	r->http10 = r->keep_alive_token = r->close_token = false;
	r->chunked = r->other_coding = r->has_length = false;
	r->length = r->remaining = r->body_bytes = 0;
	r->framing = HTTP_RESPONSE_NO_BODY;
	r->has_retry_after = false;
	r->line_len = 0;
	r->line_long = r->cr = r->bad_byte = false;
	r->field_len = 0;
	r->field_long = false;
}

void http_response_reset(struct http_response *r)
{
	reset_head(r);
	r->step = S_STATUS;
	r->started = false;
	r->head_bytes = 0;
	r->error = NULL;
}

static void fail(struct http_response *r, const char *why)
{
	r->step = S_ERROR;
	r->error = why;
}

/* Collect one line into r->line (LF and a CR before it removed). Returns the
 * bytes used; *done when the line is complete. */
static size_t take_line(struct http_response *r, const char *buf, size_t len, bool head, bool *done)
{
	const char *lf = memchr(buf, '\n', len);
	size_t n = lf ? (size_t)(lf - buf) : len;
	size_t room = sizeof(r->line) - 1 - r->line_len;
	size_t keep = n < room ? n : room;
	memcpy(r->line + r->line_len, buf, keep);
	r->line_len += keep;
	if (keep < n)
		r->line_long = true;
	for (size_t i = 0; i < n; i++) { /* RFC 9110 5.5: reject NUL, and CR but before LF */
		if (buf[i] == '\0' || r->cr)
			r->bad_byte = true;
		r->cr = buf[i] == '\r';
	}
	size_t used = lf ? n + 1 : n;
	if (head) {
		r->head_bytes += used;
		if (r->head_bytes > HTTP_RESPONSE_HEAD_MAX) {
			fail(r, "response header section over 64 KiB");
			*done = false;
			return used;
		}
	}
	*done = lf != NULL;
	if (*done && r->bad_byte) {
		fail(r, "NUL or bare CR in a line");
		*done = false;
		return used;
	}
	if (*done) {
		if (r->line_len > 0 && r->line[r->line_len - 1] == '\r' && !r->line_long)
			r->line_len--;
		r->line[r->line_len] = '\0';
	}
	return used;
}

static void next_line(struct http_response *r)
{
	r->line_len = 0;
	r->line_long = r->cr = r->bad_byte = false;
}

static bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

/* The value of a header line, trimmed; its length in *n. */
static const char *trim(const char *s, const char *end, size_t *n)
{
	while (s < end && is_ows(*s))
		s++;
	while (end > s && is_ows(end[-1]))
		end--;
	*n = (size_t)(end - s);
	return s;
}

static bool token_eq(const char *s, size_t n, const char *token)
{
	return strlen(token) == n && strncasecmp(s, token, n) == 0;
}

/* "HTTP/1.x NNN[ reason]" */
static void parse_status(struct http_response *r)
{
	const char *l = r->line;
	if (strncmp(l, "HTTP/1.", 7) != 0 || l[7] < '0' || l[7] > '9' || l[8] != ' ') {
		fail(r, "not an HTTP/1.x status line");
		return;
	}
	r->http10 = l[7] == '0';
	const char *c = l + 9;
	if (c[0] < '1' || c[0] > '5' || c[1] < '0' || c[1] > '9' || c[2] < '0' || c[2] > '9' ||
	    (c[3] != '\0' && c[3] != ' ')) {
		fail(r, "bad status code in the status line");
		return;
	}
	r->status = (c[0] - '0') * 100 + (c[1] - '0') * 10 + (c[2] - '0');
	r->step = S_HEADER;
}

static void header_content_length(struct http_response *r, const char *v, size_t n, bool cut)
{
	uint64_t x = 0;
	if (n == 0 || cut) {
		fail(r, "bad Content-Length");
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9') {
			fail(r, "bad Content-Length");
			return;
		}
	}
	while (n > 1 && v[0] == '0') { /* leading zeros do not count toward the 18 digits */
		v++;
		n--;
	}
	if (n > 18) {
		fail(r, "bad Content-Length");
		return;
	}
	for (size_t i = 0; i < n; i++)
		x = x * 10 + (uint64_t)(v[i] - '0');
	if (r->has_length && r->length != x) {
		fail(r, "conflicting Content-Length headers");
		return;
	}
	r->has_length = true;
	r->length = x;
}

/* Comma-separated tokens: the last transfer coding, or the connection options. */
static void header_tokens(struct http_response *r, const char *v, size_t n, bool coding)
{
	const char *end = v + n;
	while (v < end) {
		const char *comma = memchr(v, ',', (size_t)(end - v));
		const char *stop = comma ? comma : end;
		size_t tn;
		const char *t = trim(v, stop, &tn);
		if (coding) {
			r->chunked = token_eq(t, tn, "chunked");
			r->other_coding = !r->chunked;
		} else if (token_eq(t, tn, "close")) {
			r->close_token = true;
		} else if (token_eq(t, tn, "keep-alive")) {
			r->keep_alive_token = true;
		}
		v = comma ? comma + 1 : end;
	}
}

static void end_of_head(struct http_response *r)
{
	if (r->status == 101) {
		fail(r, "unexpected 101 Switching Protocols");
	} else if (r->status < 200) { /* 100 Continue and the like: the real one follows */
		reset_head(r);
		r->step = S_STATUS;
	} else if (r->status == 204 || r->status == 304) {
		r->step = S_DONE;
	} else if (r->chunked) {
		r->framing = HTTP_RESPONSE_CHUNKED;
		r->step = S_CHUNK_SIZE;
	} else if (r->other_coding || !r->has_length) {
		r->framing = HTTP_RESPONSE_TO_CLOSE;
		r->step = S_BODY_EOF;
	} else {
		r->framing = HTTP_RESPONSE_LENGTH;
		r->remaining = r->length;
		r->step = r->length ? S_BODY_LENGTH : S_DONE;
	}
}

/* RFC 9110 5.6.2: the characters of a token, such as a field name. */
static bool is_tchar(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* A complete (unfolded) header field line: the few fields read. */
static void header_field(struct http_response *r, const char *l, size_t len, bool cut)
{
	const char *colon = memchr(l, ':', len);
	size_t nn, vn;
	const char *name = trim(l, colon, &nn);
	const char *v = trim(colon + 1, l + len, &vn);
	if (token_eq(name, nn, "content-length")) {
		header_content_length(r, v, vn, cut);
	} else if (token_eq(name, nn, "transfer-encoding")) {
		if (cut)
			fail(r, "Transfer-Encoding header too long");
		else
			header_tokens(r, v, vn, true);
	} else if (token_eq(name, nn, "connection")) {
		header_tokens(r, v, vn, false);
	} else if (token_eq(name, nn, "retry-after") && !cut && vn < sizeof(r->retry_after)) {
		memcpy(r->retry_after, v, vn);
		r->retry_after[vn] = '\0';
		r->has_retry_after = true;
	}
}

/* A line of the header section or of the trailers (read for their syntax
 * only: RFC 9110 6.5.1, no trailer field changes how the response is read).
 * The previous field line is acted on once this one shows it was not
 * folded. */
static void parse_field_line(struct http_response *r, bool trailer)
{
	const char *l = r->line;
	if (r->line_len > 0 && is_ows(l[0])) {
		if (r->field_len == 0) /* before the first field: RFC 9112 2.2, skipped */
			return;
		size_t vn;
		const char *v = trim(l, l + r->line_len, &vn);
		if (r->field_len + 1 + vn < sizeof(r->field) && !r->line_long) {
			r->field[r->field_len++] = ' ';
			memcpy(r->field + r->field_len, v, vn);
			r->field_len += vn;
		} else {
			r->field_long = true;
		}
		return;
	}
	if (r->line_len > 0) {
		const char *colon = memchr(l, ':', r->line_len);
		if (!colon) {
			fail(r, "malformed header line");
			return;
		}
		if (colon > l && is_ows(colon[-1])) { /* RFC 9112 5.1: a response to reject */
			fail(r, "whitespace before a header's colon");
			return;
		}
		if (colon == l) {
			fail(r, "empty header name");
			return;
		}
		for (const char *c = l; c < colon; c++) {
			if (!is_tchar(*c)) {
				fail(r, "bad character in a header name");
				return;
			}
		}
	}
	if (r->field_len > 0 && !trailer)
		header_field(r, r->field, r->field_len, r->field_long);
	if (r->step == S_ERROR)
		return;
	memcpy(r->field, l, r->line_len);
	r->field_len = r->line_len;
	r->field_long = r->line_long;
	if (r->line_len > 0)
		return;
	if (trailer)
		r->step = S_DONE;
	else
		end_of_head(r);
}

/* "HEX[ ][;extensions]" */
static void parse_chunk_size(struct http_response *r)
{
	const char *p = r->line;
	uint64_t x = 0;
	size_t digits = 0;
	if (r->line_long) { /* what was kept of it is no size to read */
		fail(r, "chunk size line too long");
		return;
	}
	for (;; p++, digits++) {
		int d;
		if (*p >= '0' && *p <= '9')
			d = *p - '0';
		else if (*p >= 'a' && *p <= 'f')
			d = *p - 'a' + 10;
		else if (*p >= 'A' && *p <= 'F')
			d = *p - 'A' + 10;
		else
			break;
		/* Checked before it is computed: 16 * x wraps past 64 bits. */
		if (x > (HTTP_RESPONSE_SIZE_MAX - (uint64_t)d) / 16) {
			fail(r, "chunk size too large");
			return;
		}
		x = x * 16 + (uint64_t)d;
	}
	while (is_ows(*p))
		p++;
	if (digits == 0 || (*p != '\0' && *p != ';')) {
		fail(r, "bad chunk size line");
		return;
	}
	r->remaining = x;
	r->step = x ? S_CHUNK_DATA : S_TRAILER;
}

static size_t skip_body(struct http_response *r, size_t len, enum step after)
{
	size_t n = r->remaining < len ? (size_t)r->remaining : len;
	r->remaining -= n;
	r->body_bytes += n;
	if (r->remaining == 0)
		r->step = after;
	return n;
}

size_t http_response_feed(struct http_response *r, const char *buf, size_t len)
{
	size_t used = 0;
	if (len > 0 && r->step != S_DONE && r->step != S_ERROR)
		r->started = true;
	while (used < len && r->step != S_DONE && r->step != S_ERROR) {
		const char *p = buf + used;
		size_t n = len - used;
		bool line = false;
		switch (r->step) {
		case S_STATUS:
		case S_HEADER:
		case S_TRAILER:
			used += take_line(r, p, n, true, &line);
			if (!line)
				break;
			if (r->step == S_STATUS)
				parse_status(r);
			else
				parse_field_line(r, r->step == S_TRAILER);
			next_line(r);
			break;
		case S_CHUNK_SIZE:
		case S_CHUNK_END:
			used += take_line(r, p, n, false, &line);
			if (!line)
				break;
			if (r->step == S_CHUNK_SIZE)
				parse_chunk_size(r);
			else if (r->line_len == 0)
				r->step = S_CHUNK_SIZE;
			else
				fail(r, "chunk data longer than its size");
			next_line(r);
			break;
		case S_BODY_LENGTH:
			used += skip_body(r, n, S_DONE);
			break;
		case S_CHUNK_DATA:
			used += skip_body(r, n, S_CHUNK_END);
			break;
		case S_BODY_EOF:
			r->body_bytes += n;
			used = len;
			break;
		case S_DONE:
		case S_ERROR:
			break;
		}
	}
	return used;
}

void http_response_eof(struct http_response *r)
{
	if (r->step == S_BODY_EOF)
		r->step = S_DONE;
	else if (r->step != S_DONE && r->step != S_ERROR)
		fail(r, r->started ? "connection closed before the response was complete"
				   : "empty reply from server");
}

enum http_response_state http_response_state(const struct http_response *r)
{
	if (r->step == S_DONE)
		return HTTP_RESPONSE_DONE;
	return r->step == S_ERROR ? HTTP_RESPONSE_ERROR : HTTP_RESPONSE_MORE;
}

long http_response_status(const struct http_response *r)
{
	return r->status;
}

const char *http_response_retry_after(const struct http_response *r)
{
	return r->has_retry_after ? r->retry_after : NULL;
}

bool http_response_keep_alive(const struct http_response *r)
{
	if (r->step != S_DONE || r->other_coding || (r->chunked && r->has_length))
		return false;
	if (!r->chunked && !r->has_length && r->status != 204 && r->status != 304)
		return false; /* the body ran to the close */
	return r->http10 ? r->keep_alive_token && !r->close_token : !r->close_token;
}

bool http_response_started(const struct http_response *r)
{
	return r->started;
}

enum http_response_framing http_response_framing(const struct http_response *r)
{
	return r->framing;
}

uint64_t http_response_body_bytes(const struct http_response *r)
{
	return r->body_bytes;
}

const char *http_response_error(const struct http_response *r)
{
	return r->error;
}
