/* http_response: the HTTP/1.x response parser of the plain-HTTP client.
 * Every response is parsed twice: in one piece and fed one byte at a time,
 * and both must agree. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_response.h"

struct outcome {
	enum http_response_state state;
	long status;
	bool keep_alive;
	char retry_after[64]; /* "" = none */
	char error[128];      /* "" = none */
	size_t used;	      /* bytes taken of the input */
};

static void take(struct http_response *r, struct outcome *o, size_t used, bool eof)
{
	if (eof)
		http_response_eof(r);
	o->state = http_response_state(r);
	o->status = http_response_status(r);
	o->keep_alive = http_response_keep_alive(r);
	const char *ra = http_response_retry_after(r);
	snprintf(o->retry_after, sizeof(o->retry_after), "%s", ra ? ra : "");
	const char *e = http_response_error(r);
	snprintf(o->error, sizeof(o->error), "%s", e ? e : "");
	o->used = used;
}

/* Parse s whole and byte by byte (then the EOF when eof), check both agree. */
static struct outcome parse(const char *s, bool eof)
{
	size_t len = strlen(s);
	struct http_response *r = http_response_new();
	assert_non_null(r);
	struct outcome whole, bytes;
	take(r, &whole, http_response_feed(r, s, len), eof);

	http_response_reset(r);
	size_t used = 0;
	for (size_t i = 0; i < len; i++) {
		size_t n = http_response_feed(r, s + i, 1);
		used += n;
		if (n == 0)
			break;
	}
	take(r, &bytes, used, eof);
	http_response_free(r);

	assert_int_equal(whole.state, bytes.state);
	assert_int_equal(whole.status, bytes.status);
	assert_int_equal(whole.keep_alive, bytes.keep_alive);
	assert_string_equal(whole.retry_after, bytes.retry_after);
	assert_string_equal(whole.error, bytes.error);
	assert_int_equal(whole.used, bytes.used);
	return whole;
}

static void assert_done(struct outcome o, long status, bool keep_alive)
{
	if (o.state != HTTP_RESPONSE_DONE)
		fail_msg("state %d, error \"%s\"", o.state, o.error);
	assert_int_equal(o.status, status);
	assert_int_equal(o.keep_alive, keep_alive);
}

static void assert_error(struct outcome o, const char *error)
{
	assert_int_equal(o.state, HTTP_RESPONSE_ERROR);
	assert_string_equal(o.error, error);
	assert_false(o.keep_alive);
}

static void test_content_length(void **state)
{
	(void)state;
	const char *s = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\n\r\nhello";
	struct outcome o = parse(s, false);
	assert_done(o, 200, true);
	assert_int_equal(o.used, strlen(s));
	assert_string_equal(o.retry_after, "");

	assert_done(parse("HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n", false), 202, true);
	/* LF-only line ends, no reason phrase */
	assert_done(parse("HTTP/1.1 500\nContent-Length: 2\n\nno", false), 500, true);
	/* the same length twice is one length */
	assert_done(
	    parse("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", false), 200,
	    true);
}

static void test_incomplete_then_eof(void **state)
{
	(void)state;
	struct outcome o = parse("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhal", false);
	assert_int_equal(o.state, HTTP_RESPONSE_MORE);
	assert_error(parse("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhal", true),
		     "connection closed before the response was complete");
	assert_error(parse("HTTP/1.1 200 OK\r\nContent-Le", true),
		     "connection closed before the response was complete");
	assert_error(parse("", true), "empty reply from server");
}

static void test_body_to_close(void **state)
{
	(void)state;
	const char *s = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it";
	assert_int_equal(parse(s, false).state, HTTP_RESPONSE_MORE);
	assert_done(parse(s, true), 200, false);
	/* a transfer coding other than chunked also runs to the close */
	assert_done(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzz", true), 200,
		    false);
}

static void test_no_body_statuses(void **state)
{
	(void)state;
	struct outcome o = parse("HTTP/1.1 204 No Content\r\n\r\nextra", false);
	assert_done(o, 204, true);
	assert_int_equal(o.used, strlen("HTTP/1.1 204 No Content\r\n\r\n"));
	assert_done(parse("HTTP/1.1 304 Not Modified\r\n\r\n", false), 304, true);
}

static void test_chunked(void **state)
{
	(void)state;
	const char *s = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
			"5\r\nhello\r\n1A;name=value\r\nabcdefghijklmnopqrstuvwxyz\r\n"
			"0\r\nX-Trailer: 1\r\n\r\n";
	struct outcome o = parse(s, false);
	assert_done(o, 200, true);
	assert_int_equal(o.used, strlen(s));
	assert_done(
	    parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n0\r\n\r\n", false),
	    200, true);
	/* chunked and a length: parsed as chunked, the connection not reused */
	assert_done(parse("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked"
			  "\r\n\r\n0\r\n\r\n",
			  false),
		    200, false);
	assert_error(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", false),
		     "bad chunk size line");
	assert_error(
	    parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", false),
	    "chunk data longer than its size");
	assert_error(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
			   "ffffffffffffffffff\r\n",
			   false),
		     "chunk size too large");
}

/* Chunk sizes past 64 bits or on an overlong line were read wrapped or cut,
 * so a broken response passed as a reusable 200. */
static void test_chunk_size_overflow(void **state)
{
	(void)state;
	static const char te[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
	static const char *const too_large[] = {
	    "10000000000000000\r\n", /* 16^16 = 2^64, once read as 0: the last chunk */
	    "10000000000000005\r\n", /* once read as 5 */
	    "4000000000000001\r\n",  /* 2^62 + 1, 16 digits */
	    "fffffffffffffffff\r\n", /* 17 digits */
	};
	char buf[512];
	for (size_t i = 0; i < sizeof(too_large) / sizeof(too_large[0]); i++) {
		snprintf(buf, sizeof(buf), "%s%s", te, too_large[i]);
		assert_error(parse(buf, false), "chunk size too large");
	}
	/* 15 and 16 digits within the limit are sizes, not errors. */
	snprintf(buf, sizeof(buf), "%s%s", te, "000000000000005\r\nhello\r\n0\r\n\r\n");
	assert_done(parse(buf, false), 200, true);
	snprintf(buf, sizeof(buf), "%s%s", te, "0000000000000005\r\nhello\r\n0\r\n\r\n");
	assert_done(parse(buf, false), 200, true);
	/* 300 zeros then 5: a line longer than the parser keeps, once cut and
	 * read as the last chunk. */
	size_t n = (size_t)snprintf(buf, sizeof(buf), "%s", te);
	memset(buf + n, '0', 300);
	snprintf(buf + n + 300, sizeof(buf) - n - 300, "5\r\nhello\r\n0\r\n\r\n");
	assert_error(parse(buf, false), "chunk size line too long");
}

static void test_interim_responses(void **state)
{
	(void)state;
	assert_done(parse("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\nX: y\r\n\r\n"
			  "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
			  false),
		    201, true);
	assert_error(parse("HTTP/1.1 101 Switching Protocols\r\n\r\n", false),
		     "unexpected 101 Switching Protocols");
}

static void test_keep_alive_rules(void **state)
{
	(void)state;
	assert_done(
	    parse("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", false), 200,
	    false);
	assert_done(parse("HTTP/1.1 200 OK\r\nConnection: Upgrade, CLOSE\r\nContent-Length: 0"
			  "\r\n\r\n",
			  false),
		    200, false);
	assert_done(parse("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false), 200, false);
	assert_done(
	    parse("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", false),
	    200, true);
}

static void test_retry_after(void **state)
{
	(void)state;
	struct outcome o = parse("HTTP/1.1 429 Too Many\r\nRetry-After:  120 \r\n"
				 "Content-Length: 0\r\n\r\n",
				 false);
	assert_done(o, 429, true);
	assert_string_equal(o.retry_after, "120");
	o = parse("HTTP/1.1 503 Busy\r\nretry-after: Wed, 21 Oct 2015 07:28:00 GMT\r\n"
		  "Content-Length: 0\r\n\r\n",
		  false);
	assert_string_equal(o.retry_after, "Wed, 21 Oct 2015 07:28:00 GMT");
	char s[512];
	snprintf(s, sizeof(s),
		 "HTTP/1.1 503 Busy\r\nRetry-After: %0100d\r\nContent-Length: 0\r\n\r\n", 7);
	o = parse(s, false);
	assert_done(o, 503, true);
	assert_string_equal(o.retry_after, ""); /* too long to be a value we read */
}

static void test_malformed(void **state)
{
	(void)state;
	assert_error(parse("SSH-2.0-OpenSSH_9.2\r\n", false), "not an HTTP/1.x status line");
	assert_error(parse("HTTP/2 200\r\n\r\n", false), "not an HTTP/1.x status line");
	assert_error(parse("HTTP/1.1 20 OK\r\n\r\n", false), "bad status code in the status line");
	assert_error(parse("HTTP/1.1 2000 OK\r\n\r\n", false),
		     "bad status code in the status line");
	assert_error(parse("HTTP/1.1 600 OK\r\n\r\n", false), "bad status code in the status line");
	assert_error(parse("HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", false),
		     "malformed header line");
	/* RFC 9112 5.1: no whitespace between a field name and its colon. */
	assert_error(parse("HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\nhello", false),
		     "whitespace before a header's colon");
	assert_error(parse("HTTP/1.1 200 OK\r\nContent-Length\t: 5\r\n\r\nhello", false),
		     "whitespace before a header's colon");
	assert_error(parse("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", false),
		     "bad Content-Length");
	assert_error(
	    parse("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", false),
	    "conflicting Content-Length headers");
	assert_error(
	    parse("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", false),
	    "bad Content-Length");
}

static void test_header_limit(void **state)
{
	(void)state;
	/* 70 KiB of headers: refused once past 64 KiB, without waiting for the end */
	size_t n = 70 * 1024;
	char *s = malloc(n + 64);
	assert_non_null(s);
	strcpy(s, "HTTP/1.1 200 OK\r\n");
	size_t at = strlen(s);
	while (at < n) {
		memcpy(s + at, "X-Filler: 0123456789012345678901234567890123456789\r\n", 52);
		at += 52;
	}
	s[at] = '\0';
	assert_error(parse(s, false), "response header section over 64 KiB");
	/* a long header line we do not read is skipped, not an error */
	snprintf(s, n, "HTTP/1.1 200 OK\r\nX-Long: %01000d\r\nContent-Length: 0\r\n\r\n", 1);
	assert_done(parse(s, false), 200, true);
	free(s);
}

static void test_reset_reuses(void **state)
{
	(void)state;
	struct http_response *r = http_response_new();
	assert_non_null(r);
	const char *a = "HTTP/1.1 429 No\r\nRetry-After: 5\r\nContent-Length: 0\r\n\r\n";
	assert_int_equal(http_response_feed(r, a, strlen(a)), strlen(a));
	assert_true(http_response_started(r));
	http_response_reset(r);
	assert_false(http_response_started(r));
	assert_int_equal(http_response_state(r), HTTP_RESPONSE_MORE);
	const char *b = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
	assert_int_equal(http_response_feed(r, b, strlen(b)), strlen(b));
	assert_int_equal(http_response_status(r), 200);
	assert_null(http_response_retry_after(r));
	http_response_free(r);
	http_response_free(NULL);
}

/* Found by tests/unit/test_http_differential.c against http-parser. */
static void test_field_syntax(void **state)
{
	(void)state;
	/* RFC 9110 5.1: a field name is a token */
	assert_error(parse("HTTP/1.1 200 OK\r\nContent Length: 5\r\n\r\nhello", true),
		     "bad character in a header name");
	assert_error(parse("HTTP/1.1 200 OK\r\nContent-Length\x0b: 5\r\n\r\nhello", true),
		     "bad character in a header name");
	assert_error(parse("HTTP/1.1 200 OK\r\n: 1\r\nContent-Length: 0\r\n\r\n", false),
		     "empty header name");
	/* RFC 9110 5.5: CR (but before LF) and NUL are rejected */
	assert_error(parse("HTTP/1.1 200 OK\r\nConnection: keep-alive\rclose\r\n\r\n", false),
		     "NUL or bare CR in a line");
	static const char nul[] =
	    "HTTP/1.1 200 OK\r\nConnection: close\0\r\nContent-Length: 0\r\n\r\n";
	struct http_response *r = http_response_new();
	assert_non_null(r);
	(void)http_response_feed(r, nul, sizeof(nul) - 1);
	assert_int_equal(http_response_state(r), HTTP_RESPONSE_ERROR);
	assert_string_equal(http_response_error(r), "NUL or bare CR in a line");
	http_response_free(r);
	/* trailers are not acted on, but must be field lines */
	assert_error(
	    parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nbogus\r\n\r\n", false),
	    "malformed header line");
	assert_done(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nConnection: "
			  "close\r\n\r\n",
			  false),
		    200, true);
	/* leading zeros are not digits of the length */
	assert_done(
	    parse("HTTP/1.1 200 OK\r\nContent-Length: 0000000000000000003\r\n\r\nabc", false), 200,
	    true);
	assert_error(parse("HTTP/1.1 200 OK\r\nContent-Length: 1000000000000000000\r\n\r\n", false),
		     "bad Content-Length");
}

/* RFC 9112 5.2: a user agent reads an obs-fold as a space. */
static void test_obs_fold(void **state)
{
	(void)state;
	assert_error(parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n 6\r\n\r\nhello6", false),
		     "bad Content-Length");
	assert_done(parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n \r\n\r\nhello", false), 200,
		    true);
	const char *te =
	    "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip,\r\n chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
	struct outcome o = parse(te, false);
	assert_done(o, 200, true);
	assert_int_equal(o.used, strlen(te));
	assert_done(
	    parse("HTTP/1.1 200 OK\r\nConnection: keep-alive,\r\n\tclose\r\nContent-Length: "
		  "0\r\n\r\n",
		  false),
	    200, false);
	/* folded onto nothing (just after the status line): skipped, RFC 9112 2.2 */
	assert_done(parse("HTTP/1.1 200 OK\r\n X-A: 1\r\nContent-Length: 0\r\n\r\n", false), 200,
		    true);
}

static void test_framing(void **state)
{
	(void)state;
	static const struct {
		const char *s;
		enum http_response_framing f;
		uint64_t body;
	} cases[] = {
	    {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", HTTP_RESPONSE_LENGTH, 5},
	    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: "
	     "chunked\r\n\r\n3;x\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
	     HTTP_RESPONSE_CHUNKED, 5},
	    {"HTTP/1.1 200 OK\r\n\r\nuntil the end", HTTP_RESPONSE_TO_CLOSE, 13},
	    {"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n",
	     HTTP_RESPONSE_NO_BODY, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct http_response *r = http_response_new();
		assert_non_null(r);
		(void)http_response_feed(r, cases[i].s, strlen(cases[i].s));
		http_response_eof(r);
		assert_int_equal(http_response_state(r), HTTP_RESPONSE_DONE);
		assert_int_equal(http_response_framing(r), cases[i].f);
		assert_int_equal(http_response_body_bytes(r), cases[i].body);
		http_response_free(r);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_content_length),    cmocka_unit_test(test_incomplete_then_eof),
	    cmocka_unit_test(test_body_to_close),     cmocka_unit_test(test_no_body_statuses),
	    cmocka_unit_test(test_chunked),	      cmocka_unit_test(test_chunk_size_overflow),
	    cmocka_unit_test(test_interim_responses), cmocka_unit_test(test_keep_alive_rules),
	    cmocka_unit_test(test_retry_after),	      cmocka_unit_test(test_malformed),
	    cmocka_unit_test(test_header_limit),      cmocka_unit_test(test_reset_reuses),
	    cmocka_unit_test(test_field_syntax),      cmocka_unit_test(test_obs_fold),
	    cmocka_unit_test(test_framing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
