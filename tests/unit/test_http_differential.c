/* http_response against an independent parser: the same bytes go to
 * lib/http_response.c and to http-parser (nodejs/http-parser, Debian's
 * libhttp-parser-dev, linked into this test only), cut the same way, and
 * both must agree on whether a complete response was read (after the EOF),
 * and then on its status, its framing (no body, Content-Length, chunked, up
 * to the close), its body length, whether it was complete before the EOF,
 * how many bytes it took and whether the connection may carry another
 * request.
 *
 * Where the two legitimately differ, the test says so in one place,
 * reference(): the input is rewritten, or http-parser's verdict adjusted,
 * by a named rule with the reason; the rules that fired are counted and
 * printed, and each must fire at least once on the corpus. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <http_parser.h>

#include "http_response.h"

#define HEAD_MAX (64 * 1024) /* lib/http_response.c's cap on the header section */

struct verdict {
	bool accepted;	 /* a complete final response, the EOF reported */
	bool before_eof; /* complete before the EOF */
	long status;	 /* the rest only when accepted */
	enum http_response_framing framing;
	uint64_t body;
	size_t used; /* bytes of the input the response took */
	bool keep_alive;
	char why[96]; /* why it was rejected */
};

/* ---- ours ---- */

static struct verdict run_ours(const char *in, size_t len, const size_t *cuts, size_t ncuts)
{
	struct verdict v = {0};
	struct http_response *r = http_response_new();
	assert_non_null(r);
	size_t at = 0;
	for (size_t i = 0; i <= ncuts && http_response_state(r) == HTTP_RESPONSE_MORE; i++) {
		size_t end = i < ncuts ? cuts[i] : len;
		if (end > len)
			end = len;
		if (end <= at)
			continue;
		size_t n = http_response_feed(r, in + at, end - at);
		v.used += n;
		if (n < end - at)
			break;
		at = end;
	}
	v.before_eof = http_response_state(r) == HTTP_RESPONSE_DONE;
	if (http_response_state(r) == HTTP_RESPONSE_MORE)
		http_response_eof(r);
	v.accepted = http_response_state(r) == HTTP_RESPONSE_DONE;
	if (v.accepted) {
		v.status = http_response_status(r);
		v.framing = http_response_framing(r);
		v.body = http_response_body_bytes(r);
		v.keep_alive = http_response_keep_alive(r);
	} else {
		snprintf(v.why, sizeof(v.why), "%s", http_response_error(r));
		v.used = 0;
	}
	http_response_free(r);
	return v;
}

/* ---- http-parser ---- */

struct ref {
	http_parser p;
	bool final, complete, switching;
	long status;
	enum http_response_framing framing;
	uint64_t body;
	bool keep_alive, close;
	unsigned major, minor;
};

static int ref_headers_complete(http_parser *p)
{
	struct ref *x = p->data;
	if (p->status_code == 101)
		x->switching = true;
	if (p->status_code < 200 || p->status_code == 204 || p->status_code == 304) {
		if (p->status_code >= 200) {
			x->final = true;
			x->status = p->status_code;
			x->framing = HTTP_RESPONSE_NO_BODY;
			x->major = p->http_major;
			x->minor = p->http_minor;
		}
		/* A 1xx, 204 or 304 response has no content whatever its header
		 * says (RFC 9110 6.4.1): 1 tells http-parser so, as for HEAD. */
		return 1;
	}
	x->final = true;
	x->status = p->status_code;
	x->major = p->http_major;
	x->minor = p->http_minor;
	if (p->flags & F_CHUNKED)
		x->framing = HTTP_RESPONSE_CHUNKED;
	else if (p->content_length != ULLONG_MAX)
		x->framing = HTTP_RESPONSE_LENGTH;
	else
		x->framing = HTTP_RESPONSE_TO_CLOSE;
	return 0;
}

static int ref_body(http_parser *p, const char *at, size_t len)
{
	(void)at;
	struct ref *x = p->data;
	if (x->final)
		x->body += len;
	return 0;
}

static int ref_message_complete(http_parser *p)
{
	struct ref *x = p->data;
	if (x->final && !x->complete) {
		x->complete = true;
		x->keep_alive = http_should_keep_alive(p);
		x->close = p->flags & F_CONNECTION_CLOSE;
		http_parser_pause(p, 1); /* the bytes after it are not its */
	}
	return 0;
}

static const http_parser_settings ref_settings = {
    .on_headers_complete = ref_headers_complete,
    .on_body = ref_body,
    .on_message_complete = ref_message_complete,
};

static struct verdict run_ref_raw(const char *in, size_t len, const size_t *cuts, size_t ncuts,
				  struct ref *x)
{
	struct verdict v = {0};
	memset(x, 0, sizeof(*x));
	http_parser_init(&x->p, HTTP_RESPONSE);
	x->p.data = x;
	size_t at = 0;
	bool err = false;
	for (size_t i = 0; i <= ncuts && !x->complete && !err; i++) {
		size_t end = i < ncuts ? cuts[i] : len;
		if (end > len)
			end = len;
		if (end <= at)
			continue; /* a piece of no bytes is an EOF to http-parser */
		size_t n = http_parser_execute(&x->p, &ref_settings, in + at, end - at);
		v.used += n;
		if (x->complete)
			break;
		if (HTTP_PARSER_ERRNO(&x->p) != HPE_OK || n < end - at) {
			err = true;
			break;
		}
		at = end;
	}
	v.before_eof = x->complete;
	if (!x->complete && !err) {
		http_parser_execute(&x->p, &ref_settings, NULL, 0);
		if (x->complete)
			v.used = len;
	}
	v.accepted = x->complete;
	if (v.accepted) {
		v.status = x->status;
		v.framing = x->framing;
		v.body = x->body;
		v.keep_alive = x->keep_alive;
	} else {
		snprintf(v.why, sizeof(v.why), "%s", http_errno_name(HTTP_PARSER_ERRNO(&x->p)));
		v.used = 0;
	}
	return v;
}

/* ---- the known differences ---- */

enum rule {
	R_HEAD_CAP,
	R_SWITCHING,
	R_STATUS_RANGE,
	R_VERSION,
	R_STATUS_SP,
	R_LEADING_EOL,
	R_WS_COLON,
	R_DUP_LENGTH,
	R_TE_AND_LENGTH,
	R_LENGTH_TAB,
	R_CTL,
	R_CHUNK_LF,
	R_TRAILER_CONNECTION,
	R_10_CLOSE,
	R_NRULES,
};

static const char *const rule_why[R_NRULES] = {
    [R_HEAD_CAP] = "header section over 64 KiB: ours rejects it, http-parser's cap is 80 KiB "
		   "a message",
    [R_SWITCHING] = "101: ours refuses it (the client never asks for an upgrade), "
		    "http-parser reads it as an interim response or an upgrade",
    [R_STATUS_RANGE] = "status outside 100-599: ours rejects it (RFC 9110 15: invalid; the "
		       "daemon retries it as it would a 5xx), http-parser takes any 3 digits",
    [R_VERSION] = "a version other than HTTP/1.<digit>: ours rejects it (RFC 9112 2.3), "
		  "http-parser takes any digits",
    [R_STATUS_SP] = "more than one space after the version: ours rejects it (RFC 9112 4), "
		    "http-parser skips them",
    [R_LEADING_EOL] = "empty lines before the status line: ours rejects them, http-parser "
		      "skips them",
    [R_WS_COLON] = "whitespace in a field name or before its colon: ours rejects it (RFC "
		   "9110 5.1; RFC 9112 5.1 says a recipient must), http-parser 2.9.4 takes it",
    [R_DUP_LENGTH] = "the same Content-Length twice: ours keeps the value (RFC 9110 8.6 "
		     "allows either), http-parser rejects it; compared with the copy removed",
    [R_TE_AND_LENGTH] = "Transfer-Encoding with Content-Length: ours lets the coding win "
			"and does not reuse the connection (RFC 9112 6.1, 6.3), http-parser "
			"rejects it; compared with the Content-Length removed",
    [R_LENGTH_TAB] = "HTAB around a Content-Length value: OWS to ours (RFC 9110 5.6.3), "
		     "http-parser 2.9.4 rejects it; compared with spaces",
    [R_CTL] = "a control character other than HT, CR, LF, NUL in the head: ours keeps it "
	      "(RFC 9110 5.5 lets a recipient), http-parser rejects it; compared with it "
	      "replaced by '@' (not a token character, so still wrong in a name)",
    [R_CHUNK_LF] = "a bare LF ending a line: ours takes it everywhere, http-parser in the "
		   "head only, not after a chunk size; compared with CRLF",
    [R_TRAILER_CONNECTION] = "Connection in the trailers: ours ignores it (RFC 9110 6.5.1), "
			     "http-parser closes; compared with the field renamed",
    [R_10_CLOSE] = "HTTP/1.0 with both keep-alive and close: close wins for ours (RFC 9112 "
		   "9.3), http-parser 2.9.4 ignores close in HTTP/1.0",
};
static unsigned rule_hits[R_NRULES];

/* A copy of the input being rewritten, with where each of its bytes came
 * from: map[i] is the offset in the original of byte i, map[len] the
 * original's length. */
struct copy {
	char *b;
	size_t len, *map;
};

static void copy_init(struct copy *c, const char *in, size_t len)
{
	c->b = malloc(len + 1);
	c->map = malloc((len + 1) * sizeof(*c->map));
	assert_true(c->b && c->map);
	memcpy(c->b, in, len);
	for (size_t i = 0; i <= len; i++)
		c->map[i] = i;
	c->len = len;
}

static void copy_free(struct copy *c)
{
	free(c->b);
	free(c->map);
}

/* Replace n bytes at off with the m bytes of with. */
static void copy_splice(struct copy *c, size_t off, size_t n, const char *with, size_t m)
{
	size_t len = c->len - n + m;
	char *b = malloc(len + 1);
	size_t *map = malloc((len + 1) * sizeof(*map));
	assert_true(b && map);
	memcpy(b, c->b, off);
	memcpy(map, c->map, off * sizeof(*map));
	memcpy(b + off, with, m);
	for (size_t i = 0; i < m; i++)
		map[off + i] = c->map[off];
	memcpy(b + off + m, c->b + off + n, c->len - off - n);
	memcpy(map + off + m, c->map + off + n, (c->len - off - n + 1) * sizeof(*map));
	copy_free(c);
	c->b = b;
	c->map = map;
	c->len = len;
}

/* The line at off (LF included), its length. */
static size_t line_at(const struct copy *c, size_t off)
{
	const char *lf = memchr(c->b + off, '\n', c->len - off);
	return lf ? (size_t)(lf - (c->b + off)) + 1 : c->len - off;
}

static bool starts(const struct copy *c, size_t off, size_t n, const char *prefix)
{
	size_t pl = strlen(prefix);
	return n >= pl && strncasecmp(c->b + off, prefix, pl) == 0;
}

static bool is_odd_ctl(unsigned char c)
{
	return (c < 0x20 && c != '\t' && c != '\r' && c != '\n' && c != '\0') || c == 0x7f;
}

/* The Content-Length lines: their number, and whether their values agree. */
static unsigned length_lines(const struct copy *c, bool *same)
{
	unsigned n = 0;
	char first[64] = "";
	*same = true;
	for (size_t off = 0; off < c->len;) {
		size_t ln = line_at(c, off);
		if (starts(c, off, ln, "content-length:")) {
			char v[64];
			size_t vl = ln - 15 < sizeof(v) - 1 ? ln - 15 : sizeof(v) - 1;
			memcpy(v, c->b + off + 15, vl);
			v[vl] = '\0';
			if (n++ == 0)
				memcpy(first, v, sizeof(v));
			else if (strcmp(first, v) != 0)
				*same = false;
		}
		off += ln;
	}
	return n;
}

/* Whether a field line of the head has whitespace in its name or before its
 * colon, or its
 * status line more than one space after the version. */
static bool head_has(const char *in, size_t len, bool status_sp)
{
	for (size_t off = 0; off < len;) {
		const char *lf = memchr(in + off, '\n', len - off);
		size_t ln = lf ? (size_t)(lf - (in + off)) : len - off;
		if (ln == 0 || (ln == 1 && in[off] == '\r'))
			break;
		const char *colon = memchr(in + off, ':', ln);
		if (status_sp && off == 0 && ln > 9 && in[off + 8] == ' ' && in[off + 9] == ' ')
			return true;
		if (!status_sp && off > 0 && colon && in[off] != ' ' && in[off] != '\t' &&
		    (memchr(in + off, ' ', (size_t)(colon - (in + off))) ||
		     memchr(in + off, '\t', (size_t)(colon - (in + off)))))
			return true;
		off += ln + 1;
	}
	return false;
}

/* http-parser's verdict, with the rules above applied: what ours must say. */
static struct verdict reference(const char *in, size_t len, const size_t *cuts, size_t ncuts,
				const struct verdict *ours)
{
	struct ref x;
	struct copy c;
	bool hit[R_NRULES] = {0};
	copy_init(&c, in, len);
	bool chunked = false;
	for (size_t off = 0; off < c.len;) {
		size_t ln = line_at(&c, off);
		for (size_t i = off; i < off + ln; i++)
			if (is_odd_ctl((unsigned char)c.b[i])) {
				c.b[i] = '@';
				hit[R_CTL] = true;
			}
		if (starts(&c, off, ln, "content-length:") && memchr(c.b + off, '\t', ln)) {
			for (size_t i = off; i < off + ln; i++)
				if (c.b[i] == '\t')
					c.b[i] = ' ';
			hit[R_LENGTH_TAB] = true;
		}
		if (starts(&c, off, ln, "transfer-encoding:"))
			chunked = true;
		/* After the last chunk of a chunked body: its trailers. */
		if (chunked && ln >= 2 && c.b[off] == '0' &&
		    (c.b[off + 1] == '\r' || c.b[off + 1] == '\n')) {
			for (size_t t = off + ln; t < c.len;) {
				size_t tl = line_at(&c, t);
				if (starts(&c, t, tl, "connection:")) {
					c.b[t] = 'X';
					hit[R_TRAILER_CONNECTION] = true;
				}
				t += tl;
			}
		}
		if (ln > 0 && c.b[off + ln - 1] == '\n' && (ln < 2 || c.b[off + ln - 2] != '\r')) {
			copy_splice(&c, off + ln - 1, 1, "\r\n", 2);
			ln++;
			hit[R_CHUNK_LF] = true;
		}
		off += ln;
	}
	/* The cuts, where they fall in the copy. */
	size_t *cc = malloc((ncuts + 1) * sizeof(*cc));
	assert_non_null(cc);
	for (size_t i = 0, j = 0; i < ncuts; i++) {
		while (j < c.len && c.map[j] < cuts[i])
			j++;
		cc[i] = j;
	}
	struct verdict v = run_ref_raw(c.b, c.len, cc, ncuts, &x);
	if (!v.accepted && HTTP_PARSER_ERRNO(&x.p) == HPE_UNEXPECTED_CONTENT_LENGTH) {
		bool te = false, same;
		for (size_t off = 0; off < c.len; off += line_at(&c, off))
			te = te || starts(&c, off, line_at(&c, off), "transfer-encoding:");
		if (te || (length_lines(&c, &same) > 1 && same)) {
			unsigned seen = 0;
			for (size_t off = 0; off < c.len;) {
				size_t ln = line_at(&c, off);
				if (starts(&c, off, ln, "content-length:") && (te || seen++ > 0))
					copy_splice(&c, off, ln, "", 0);
				else
					off += ln;
			}
			for (size_t i = 0, j = 0; i < ncuts; i++) {
				while (j < c.len && c.map[j] < cuts[i])
					j++;
				cc[i] = j;
			}
			v = run_ref_raw(c.b, c.len, cc, ncuts, &x);
			if (v.accepted && te)
				v.keep_alive = false;
			hit[te ? R_TE_AND_LENGTH : R_DUP_LENGTH] = true;
		}
	}
	if (v.accepted)
		v.used = c.map[v.used];
	if (v.accepted && x.switching) {
		v.accepted = false;
		hit[R_SWITCHING] = true;
	} else if (v.accepted && (x.status < 100 || x.status > 599)) {
		v.accepted = false;
		hit[R_STATUS_RANGE] = true;
	} else if (v.accepted && (x.major != 1 || x.minor > 9)) {
		v.accepted = false;
		hit[R_VERSION] = true;
	} else if (v.accepted && len > 0 && (in[0] == '\r' || in[0] == '\n')) {
		v.accepted = false;
		hit[R_LEADING_EOL] = true;
	} else if (v.accepted && head_has(in, len, true)) {
		v.accepted = false;
		hit[R_STATUS_SP] = true;
	} else if (v.accepted && head_has(in, len, false)) {
		v.accepted = false;
		hit[R_WS_COLON] = true;
	} else if (v.accepted && !ours->accepted && len > HEAD_MAX &&
		   strcmp(ours->why, "response header section over 64 KiB") == 0) {
		v.accepted = false;
		hit[R_HEAD_CAP] = true;
	}
	if (v.accepted && x.minor == 0 && x.close && v.keep_alive) {
		v.keep_alive = false;
		hit[R_10_CLOSE] = true;
	}
	if (!v.accepted)
		v.used = 0;
	for (int i = 0; i < R_NRULES; i++)
		rule_hits[i] += hit[i];
	free(cc);
	copy_free(&c);
	return v;
}

/* ---- comparing ---- */

static const char *framing_name(enum http_response_framing f)
{
	static const char *const names[] = {"no body", "length", "chunked", "to close"};
	return names[f];
}

static unsigned compared, accepted_both, mismatches;
static const char *last_mismatch; /* the name of the input: one report per input */

static void printable(const char *in, size_t len, char *out, size_t cap)
{
	size_t o = 0;
	for (size_t i = 0; i < len && o + 5 < cap; i++) {
		unsigned char c = (unsigned char)in[i];
		if (c == '\r')
			o += (size_t)snprintf(out + o, cap - o, "\\r");
		else if (c == '\n')
			o += (size_t)snprintf(out + o, cap - o, "\\n");
		else if (isprint(c))
			out[o++] = (char)c;
		else
			o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
	}
	out[o] = '\0';
}

static void compare(const char *name, const char *in, size_t len, const size_t *cuts, size_t ncuts)
{
	struct verdict o = run_ours(in, len, cuts, ncuts);
	struct verdict r = reference(in, len, cuts, ncuts, &o);
	compared++;
	bool same = o.accepted == r.accepted;
	if (same && o.accepted)
		same = o.status == r.status && o.framing == r.framing && o.body == r.body &&
		       o.used == r.used && o.keep_alive == r.keep_alive &&
		       o.before_eof == r.before_eof;
	if (same) {
		accepted_both += o.accepted;
		return;
	}
	mismatches++;
	if (last_mismatch == name)
		return;
	last_mismatch = name;
	char shown[400];
	printable(in, len, shown, sizeof(shown));
	print_error("%s (%zu bytes, %zu cuts, first at %zu): \"%s\"\n"
		    "  ours:        %s status %ld framing %s body %llu used %zu keep-alive %d "
		    "before-eof %d %s\n"
		    "  http-parser: %s status %ld framing %s body %llu used %zu keep-alive %d "
		    "before-eof %d %s\n",
		    name, len, ncuts, ncuts ? cuts[0] : len, shown,
		    o.accepted ? "accepted" : "rejected", o.status, framing_name(o.framing),
		    (unsigned long long)o.body, o.used, o.keep_alive, o.before_eof, o.why,
		    r.accepted ? "accepted" : "rejected", r.status, framing_name(r.framing),
		    (unsigned long long)r.body, r.used, r.keep_alive, r.before_eof, r.why);
}

static void assert_agreed(void)
{
	unsigned m = mismatches;
	mismatches = 0;
	if (m)
		fail_msg("%u parses disagreed (the first of each input above)", m);
}

/* Whole, one byte at a time, and cut in two at every offset. */
static void compare_splits(const char *name, const char *in, size_t len)
{
	compare(name, in, len, NULL, 0);
	size_t *cuts = malloc((len + 1) * sizeof(*cuts));
	assert_non_null(cuts);
	for (size_t i = 0; i < len; i++)
		cuts[i] = i + 1;
	compare(name, in, len, cuts, len);
	for (size_t i = 1; i < len; i++)
		compare(name, in, len, &i, 1);
	free(cuts);
}

/* ---- the corpus ---- */

#define IN(name, s)                                                                                \
	{                                                                                          \
		name, s, sizeof(s) - 1                                                             \
	}
struct input {
	const char *name;
	const char *bytes;
	size_t len;
};

#define OK200 "HTTP/1.1 200 OK\r\n"
static const struct input corpus[] = {
    /* Content-Length */
    IN("length", OK200 "Content-Length: 5\r\n\r\nhello"),
    IN("length zero", OK200 "Content-Length: 0\r\n\r\n"),
    IN("length, bytes after", OK200 "Content-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n\r\n"),
    IN("length, mixed case, OWS", OK200 "cOnTeNt-LeNgTh:\t 3 \t\r\n\r\nabc"),
    IN("length twice, same", OK200 "Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc"),
    IN("length twice, conflicting", OK200 "Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"),
    IN("length as a list", OK200 "Content-Length: 3, 3\r\n\r\nabc"),
    IN("length negative", OK200 "Content-Length: -1\r\n\r\n"),
    IN("length plus", OK200 "Content-Length: +3\r\n\r\nabc"),
    IN("length hex", OK200 "Content-Length: 0x3\r\n\r\nabc"),
    IN("length with a space inside", OK200 "Content-Length: 1 2\r\n\r\nabcdefghijkl"),
    IN("length empty", OK200 "Content-Length:\r\n\r\n"),
    IN("length 18 digits", OK200 "Content-Length: 999999999999999999\r\n\r\nab"),
    IN("length 19 digits", OK200 "Content-Length: 1000000000000000000\r\n\r\nab"),
    IN("length 19 digits, leading zeros", OK200 "Content-Length: 0000000000000000003\r\n\r\nabc"),
    IN("length 2^64", OK200 "Content-Length: 18446744073709551616\r\n\r\nab"),
    IN("length short body", OK200 "Content-Length: 10\r\n\r\nabc"),
    IN("length, space before colon", OK200 "Content-Length : 5\r\n\r\nhello"),
    IN("length, tab before colon", OK200 "Content-Length\t: 5\r\n\r\nhello"),
    IN("length, obs-fold after it", OK200 "Content-Length: 5\r\n 6\r\n\r\nhello6"),
    IN("length, obs-fold blank", OK200 "Content-Length: 5\r\n \r\n\r\nhello"),
    IN("other header folded", OK200 "X-A: 1\r\n 2\r\nContent-Length: 2\r\n\r\nok"),
    IN("fold before the first header", OK200 " X-A: 1\r\nContent-Length: 2\r\n\r\nok"),
    /* chunked */
    IN("chunked", OK200 "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
    IN("chunked, two chunks, upper hex",
       OK200 "Transfer-Encoding: chunked\r\n\r\nA\r\n0123456789\r\n1\r\nx\r\n0\r\n\r\n"),
    IN("chunked, extensions",
       OK200 "Transfer-Encoding: chunked\r\n\r\n5;a=b;c=\"d;e\"\r\nhello\r\n0;z\r\n\r\n"),
    IN("chunked, space before extension",
       OK200 "Transfer-Encoding: chunked\r\n\r\n5 ;a=b\r\nhello\r\n0\r\n\r\n"),
    IN("chunked, trailers",
       OK200 "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\nX-U: 2\r\n\r\n"),
    IN("chunked, bytes after",
       OK200 "Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n"),
    IN("chunked, leading zeros",
       OK200 "Transfer-Encoding: chunked\r\n\r\n0005\r\nhello\r\n000\r\n\r\n"),
    IN("chunked, data too long", OK200 "Transfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n"),
    IN("chunked, size not hex", OK200 "Transfer-Encoding: chunked\r\n\r\nz\r\nhello\r\n0\r\n\r\n"),
    IN("chunked, size missing", OK200 "Transfer-Encoding: chunked\r\n\r\n\r\nhello\r\n0\r\n\r\n"),
    IN("chunked, negative size",
       OK200 "Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n"),
    IN("chunked, no last chunk", OK200 "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"),
    IN("chunked, no final CRLF", OK200 "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"),
    IN("chunked, 15 hex digits",
       OK200 "Transfer-Encoding: chunked\r\n\r\nfffffffffffffff\r\nhello\r\n"),
    IN("chunked, 15 hex digits of 1",
       OK200 "Transfer-Encoding: chunked\r\n\r\n000000000000001\r\nx\r\n0\r\n\r\n"),
    IN("chunked, 16 hex digits",
       OK200 "Transfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nhello\r\n"),
    IN("chunked, 16 hex digits of 2",
       OK200 "Transfer-Encoding: chunked\r\n\r\n0000000000000002\r\nxy\r\n0\r\n\r\n"),
    IN("chunked, 2^62", OK200 "Transfer-Encoding: chunked\r\n\r\n4000000000000000\r\nhello\r\n"),
    IN("chunked, 17 hex digits",
       OK200 "Transfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n"),
    IN("chunked, 17 hex digits of 3",
       OK200 "Transfer-Encoding: chunked\r\n\r\n00000000000000003\r\nxyz\r\n0\r\n\r\n"),
    IN("chunked, wraps to 5", OK200
       "Transfer-Encoding: chunked\r\n\r\n10000000000000000000000000000005\r\nhello\r\n0\r\n\r\n"),
    IN("chunked, mixed case", OK200 "transfer-encoding: ChUnKeD\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
    IN("chunked after gzip", OK200 "Transfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
    IN("gzip only", OK200 "Transfer-Encoding: gzip\r\n\r\nbinary to the close"),
    IN("chunked then gzip", OK200 "Transfer-Encoding: chunked, gzip\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
    IN("two TE headers",
       OK200 "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
    IN("TE folded", OK200 "Transfer-Encoding: gzip,\r\n chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
    IN("chunked and length",
       OK200 "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
    IN("length and chunked",
       OK200 "Content-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
    IN("chunked, space before colon",
       OK200 "Transfer-Encoding : chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
    IN("chunked, bare LF", "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n2\nok\n0\n\n"),
    IN("chunked, trailer without colon",
       OK200 "Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nbogus\r\n\r\n"),
    IN("chunked, trailer Connection: close",
       OK200 "Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nConnection: close\r\n\r\n"),
    /* no framing header */
    IN("to the close", OK200 "Content-Type: text/plain\r\n\r\nuntil the end"),
    IN("to the close, empty", OK200 "\r\n"),
    IN("head only, no blank line", OK200 "Content-Length: 0\r\n"),
    /* status line */
    IN("no reason", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n"),
    IN("no reason, space", "HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n"),
    IN("reason with spaces", "HTTP/1.1 503 Service Unavailable Now\r\nContent-Length: 0\r\n\r\n"),
    IN("4 digit status", "HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n"),
    IN("2 digit status", "HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n"),
    IN("status 600", "HTTP/1.1 600 X\r\nContent-Length: 0\r\n\r\n"),
    IN("status 099", "HTTP/1.1 099 X\r\nContent-Length: 0\r\n\r\n"),
    IN("HTTP/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"),
    IN("HTTP/1.0 keep-alive",
       "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"),
    IN("HTTP/1.0 keep-alive, to the close", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\nok"),
    IN("HTTP/1.0 Keep-Alive and close",
       "HTTP/1.0 200 OK\r\nConnection: Keep-Alive, close\r\nContent-Length: 0\r\n\r\n"),
    IN("HTTP/1.1 close", OK200 "Connection: close\r\nContent-Length: 2\r\n\r\nok"),
    IN("HTTP/1.1 close in a list",
       OK200 "Connection: foo, CLOSE ,bar\r\nContent-Length: 0\r\n\r\n"),
    IN("HTTP/1.1 closed, not close", OK200 "Connection: closed\r\nContent-Length: 0\r\n\r\n"),
    IN("two Connection headers",
       OK200 "Connection: keep-alive\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"),
    IN("HTTP/1.9", "HTTP/1.9 200 OK\r\nContent-Length: 0\r\n\r\n"),
    IN("HTTP/2.0", "HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"),
    IN("HTTP/1.10", "HTTP/1.10 200 OK\r\nContent-Length: 0\r\n\r\n"),
    IN("HTTP/1", "HTTP/1 200 OK\r\nContent-Length: 0\r\n\r\n"),
    IN("lower case http", "http/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
    IN("two spaces", "HTTP/1.1  200 OK\r\nContent-Length: 0\r\n\r\n"),
    IN("leading CRLF", "\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
    IN("not HTTP", "SSH-2.0-OpenSSH_9.2\r\n"),
    IN("empty", ""),
    IN("bare LF head", "HTTP/1.1 200 OK\nContent-Length: 2\n\nok"),
    IN("bare CR in a value", OK200 "X-A: a\rb\r\nContent-Length: 0\r\n\r\n"),
    IN("NUL in a value", OK200 "X-A: a\0b\r\nContent-Length: 0\r\n\r\n"),
    IN("NUL after close", OK200 "Connection: close\0\r\nContent-Length: 0\r\n\r\n"),
    IN("DEL in a value", OK200 "X-A: a\x7f\r\nContent-Length: 0\r\n\r\n"),
    IN("VT in a value", OK200 "X-A: a\x0b\r\nContent-Length: 0\r\n\r\n"),
    IN("VT in a name", OK200 "Content-Length\x0b: 5\r\n\r\nhello"),
    IN("obs-text in a value", OK200 "X-A: caf\xc3\xa9\r\nContent-Length: 0\r\n\r\n"),
    IN("space in a name", OK200 "Content Length: 5\r\n\r\nhello"),
    IN("at in a name", OK200 "X@A: 1\r\nContent-Length: 0\r\n\r\n"),
    IN("empty name", OK200 ": 1\r\nContent-Length: 0\r\n\r\n"),
    IN("no colon", OK200 "Content-Length 5\r\n\r\nhello"),
    IN("Retry-After", "HTTP/1.1 503 X\r\nRetry-After: 120\r\nContent-Length: 0\r\n\r\n"),
    /* interim responses, no-body statuses */
    IN("100 then 200", "HTTP/1.1 100 Continue\r\n\r\n" OK200 "Content-Length: 2\r\n\r\nok"),
    IN("two 1xx", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\nX: y\r\n\r\n" OK200
		  "Content-Length: 0\r\n\r\n"),
    IN("103 with headers",
       "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" OK200 "Content-Length: 0\r\n\r\n"),
    IN("100 with a length",
       "HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\n" OK200 "Content-Length: 0\r\n\r\n"),
    IN("100 only", "HTTP/1.1 100 Continue\r\n\r\n"),
    IN("HTTP/1.0 100 then 200", "HTTP/1.0 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n\r\nok"),
    IN("101", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: "
	      "Upgrade\r\n\r\n"),
    IN("101 bare", "HTTP/1.1 101 Switching Protocols\r\n\r\n" OK200 "Content-Length: 0\r\n\r\n"),
    IN("204", "HTTP/1.1 204 No Content\r\n\r\n"),
    IN("204 with a length", "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"),
    IN("204 chunked", "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n"),
    IN("304", "HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n"),
    IN("204 close", "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"),
    IN("HTTP/1.0 204", "HTTP/1.0 204 No Content\r\n\r\n"),
    IN("HTTP/1.0 chunked",
       "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
    IN("HTTP/1.0 chunked keep-alive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n"
				      "Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
    IN("200 upgrade headers", OK200 "Upgrade: h2c\r\nConnection: Upgrade\r\nContent-Length: "
				    "2\r\n\r\nok"),
};

/* The corpus: every input whole, one byte at a time and cut in two at every
 * offset. */
static void test_corpus(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(corpus) / sizeof(corpus[0]); i++) {
		compare_splits(corpus[i].name, corpus[i].bytes, corpus[i].len);
	}
	assert_agreed();
}

/* Each of several responses cut short at every offset, then the EOF; and
 * every prefix, then the rest, compared with the whole. */
static void test_truncated(void **state)
{
	(void)state;
	static const char *const whole[] = {
	    OK200 "Content-Length: 5\r\nConnection: keep-alive\r\n\r\nhello",
	    OK200 "Transfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n3\r\nabc\r\n0\r\nT: "
		  "1\r\n\r\n",
	    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Busy\r\nRetry-After: 5\r\nContent-Length: "
	    "4\r\n\r\nbusy",
	    "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nto the close",
	    "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
	};
	for (size_t w = 0; w < sizeof(whole) / sizeof(whole[0]); w++) {
		size_t len = strlen(whole[w]);
		for (size_t cut = 0; cut <= len; cut++) {
			char name[48];
			snprintf(name, sizeof(name), "response %zu cut at %zu", w, cut);
			compare(name, whole[w], cut, NULL, 0);
		}
	}
	assert_agreed();
}

/* Header sections around ours' 64 KiB cap and http-parser's 80 KiB. */
static void test_big_heads(void **state)
{
	(void)state;
	static const size_t sizes[] = {60 * 1024, 64 * 1024 - 64, 64 * 1024 + 64,
				       70 * 1024, 80 * 1024 + 64, 200 * 1024};
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		for (int shape = 0; shape < 4; shape++) {
			/* 0: many short headers; 1: one long header; 2: long 1xx heads
			 * then a short final one; 3: long trailers. */
			size_t cap = sizes[s] + 4096;
			char *b = malloc(cap);
			assert_non_null(b);
			size_t n = 0;
			if (shape == 2) {
				while (n + 1024 < sizes[s])
					n += (size_t)snprintf(
					    b + n, cap - n,
					    "HTTP/1.1 102 Processing\r\nX: %0900d\r\n\r\n", 0);
			}
			n += (size_t)snprintf(b + n, cap - n, "%s", OK200);
			if (shape == 3)
				n += (size_t)snprintf(
				    b + n, cap - n,
				    "Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n");
			if (shape == 1) {
				n += (size_t)snprintf(b + n, cap - n, "X-Long: ");
				while (n < sizes[s])
					b[n++] = 'a';
				n += (size_t)snprintf(b + n, cap - n, "\r\n");
			} else if (shape != 2) {
				for (unsigned i = 0; n + 64 < sizes[s]; i++)
					n += (size_t)snprintf(b + n, cap - n, "X-H%u: %040u\r\n", i,
							      i);
			}
			if (shape == 3)
				n += (size_t)snprintf(b + n, cap - n, "\r\n");
			else
				n +=
				    (size_t)snprintf(b + n, cap - n, "Content-Length: 2\r\n\r\nok");
			char name[64];
			snprintf(name, sizeof(name), "head of %zu bytes, shape %d", n, shape);
			compare(name, b, n, NULL, 0);
			size_t cuts[4] = {1, n / 3, n / 2, n - 1};
			compare(name, b, n, cuts, 4);
			free(b);
		}
	}
	assert_agreed();
}

static void test_report(void **state)
{
	(void)state;
	printf("compared %u parses, %u accepted by both\n", compared, accepted_both);
	for (int i = 0; i < R_NRULES; i++)
		printf("difference allowed %5u times: %s\n", rule_hits[i], rule_why[i]);
	assert_true(compared > 1000);
	assert_true(accepted_both > 100);
	for (int i = 0; i < R_NRULES; i++)
		if (rule_hits[i] == 0)
			fail_msg("no input of the corpus exercised: %s", rule_why[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_corpus),
	    cmocka_unit_test(test_truncated),
	    cmocka_unit_test(test_big_heads),
	    cmocka_unit_test(test_report),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
