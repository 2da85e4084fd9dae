/* event: the CloudEvents envelope, byte for byte against tests/data/event. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"

#define SOURCE "/s3-orchestrator"

/* The golden file's bytes; one trailing newline, should an editor add it, is
 * dropped (a body never ends in one). */
static char *read_golden(const char *name, size_t *len)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/event/%s", TEST_DATA_DIR, name);
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		print_error("cannot open %s\n", path);
		fail();
	}
	char *buf = malloc(65536);
	assert_non_null(buf);
	size_t n = fread(buf, 1, 65535, f);
	fclose(f);
	if (n > 0 && buf[n - 1] == '\n')
		n--;
	buf[n] = '\0';
	*len = n;
	return buf;
}

static void check_envelope(const char *golden, const char *id, const char *source, const char *type,
			   const char *subject, int64_t t, const char *data)
{
	size_t want_len, got_len = 0;
	char *want = read_golden(golden, &want_len);
	char *got = event_envelope(id, source, type, subject, t, data, &got_len);
	assert_non_null(got);
	if (got_len != want_len || strlen(got) != got_len || memcmp(got, want, want_len) != 0) {
		print_error("%s:\nexpected (%zu bytes): %s\ngot      (%zu bytes): %s\n", golden,
			    want_len, want, got_len, got);
		fail();
	}
	free(got);
	free(want);
}

static void test_with_subject(void **state)
{
	(void)state;
	check_envelope(
	    "with_subject.json", "6f1c2a9e-1b7d-4c0e-9a53-2d8e4f7b1a10", SOURCE,
	    "s3:ObjectCreated:Put", "photos/2026/a.jpg", INT64_C(1795718271123456),
	    "{\"key\": \"photos/2026/a.jpg\", \"size\": 2048576, \"bucket\": \"photos\"}");
}

static void test_without_subject(void **state)
{
	(void)state;
	const char *data = "{\"errors\": 0, \"deleted\": 3, \"total_keys\": 3}";
	/* NULL and "" both leave the key out; the time has zero microseconds. */
	check_envelope("no_subject.json", "00000000-0000-0000-0000-000000000001", SOURCE,
		       "s3:ObjectRemoved:DeleteBatch", NULL, INT64_C(951782400000000), data);
	check_envelope("no_subject.json", "00000000-0000-0000-0000-000000000001", SOURCE,
		       "s3:ObjectRemoved:DeleteBatch", "", INT64_C(951782400000000), data);
}

static void test_time_bounds(void **state)
{
	(void)state;
	check_envelope("max_micros.json", "c0ffee00-0000-4000-8000-000000000002", SOURCE,
		       "backend.circuit.opened", "b2-eu", INT64_C(1735689599999999),
		       "{\"backend\": \"b2-eu\", \"failures\": 5, \"threshold\": 5}");
	check_envelope("pre_epoch.json", "c0ffee00-0000-4000-8000-000000000003", SOURCE,
		       "service.started", NULL, -1, "{}");
}

static void test_escapes(void **state)
{
	(void)state;
	check_envelope("escapes.json", "c0ffee00-0000-4000-8000-000000000004", "/s3 \"orch\"\\x",
		       "integrity.corruption_detected",
		       "uploads/\"q\" \\ back\n\t\r\b\f\x01\x1f/"
		       "\xc3\xa9\xe2\x98\x83\xf0\x9f\x98\x80",
		       INT64_C(-14182940000000),
		       "{\"key\": \"uploads/\\\"q\\\" \\\\ back\\n\", \"note\": \"caf\xc3\xa9 "
		       "\xe2\x98\x83\"}");
}

static void test_nested(void **state)
{
	(void)state;
	check_envelope("nested.json", "c0ffee00-0000-4000-8000-000000000005", SOURCE,
		       "replication.completed", NULL, INT64_C(1795718271000001),
		       "{\"a\": {\"b\": [1, 2.5, -3e+20, null, true, false, {}, []]}, "
		       "\"s\": \"\xc3\xa9 \xe2\x98\x83 \xf0\x9f\x98\x80\", "
		       "\"deep\": [[[[{\"x\": \"y\"}]]]]}");
}

static void test_len_optional(void **state)
{
	(void)state;
	char *got = event_envelope("i", "s", "t", NULL, 0, "[]", NULL);
	assert_non_null(got);
	assert_string_equal(got, "{\"specversion\":\"1.0\",\"id\":\"i\",\"source\":\"s\","
				 "\"type\":\"t\",\"time\":\"1970-01-01T00:00:00.000000Z\","
				 "\"datacontenttype\":\"application/json\",\"data\":[]}");
	free(got);
	/* Missing required attributes give NULL rather than a broken body. */
	assert_null(event_envelope(NULL, "s", "t", NULL, 0, "{}", NULL));
	assert_null(event_envelope("i", NULL, "t", NULL, 0, "{}", NULL));
	assert_null(event_envelope("i", "s", NULL, NULL, 0, "{}", NULL));
}

/* The subject's JSON string in the body of an envelope around subject. */
static void check_subject(const char *subject, const char *want)
{
	size_t len = 0;
	char *got = event_envelope("i", "s", "t", subject, 0, "{}", &len);
	assert_non_null(got);
	assert_int_equal(strlen(got), len);
	const char *start = strstr(got, ",\"subject\":\"");
	assert_non_null(start);
	start += strlen(",\"subject\":\"");
	const char *end = strstr(start, "\",\"time\":");
	assert_non_null(end);
	if ((size_t)(end - start) != strlen(want) || memcmp(start, want, strlen(want)) != 0) {
		print_error("subject: expected \"%s\", got \"%.*s\"\n", want, (int)(end - start),
			    start);
		fail();
	}
	free(got);
}

#define FFFD "\xef\xbf\xbd"

/* Producer text from a SQL_ASCII database may be any bytes: ill-formed UTF-8
 * becomes U+FFFD, one per maximal subpart, and well-formed UTF-8 stays as is. */
static void test_invalid_utf8(void **state)
{
	(void)state;
	/* Well-formed, at the edges of each length and around the surrogates. */
	check_subject("\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbf"
		      "\xf0\x90\x80\x80\xf4\x8f\xbf\xbf",
		      "\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbf"
		      "\xf0\x90\x80\x80\xf4\x8f\xbf\xbf");
	/* Latin-1 text: each byte is one replacement. */
	check_subject("caf\xe9 \xe0 la cr\xe8me", "caf" FFFD " " FFFD " la cr" FFFD "me");
	/* Lone continuation bytes, C0/C1 and F5..FF never start a character. */
	check_subject("a\x80\xbf\xc0\xaf\xc1\xbf\xf5\xff",
		      "a" FFFD FFFD FFFD FFFD FFFD FFFD FFFD FFFD);
	/* A truncated sequence is one replacement, and the next byte starts afresh. */
	check_subject("\xe2\x98x\xf0\x9f\x98y\xc3", FFFD "x" FFFD "y" FFFD);
	check_subject("\xe2\x98\xe2\x98\x83", FFFD "\xe2\x98\x83");
	/* Overlong forms, surrogates and code points above U+10FFFF. */
	check_subject("\xe0\x80\xaf", FFFD FFFD FFFD);
	check_subject("\xed\xa0\x80", FFFD FFFD FFFD);
	check_subject("\xf0\x80\x80\xaf", FFFD FFFD FFFD FFFD);
	check_subject("\xf4\x90\x80\x80", FFFD FFFD FFFD FFFD);
	/* Escaping still applies around replacements. */
	check_subject("\xff\"\n\xfe", FFFD "\\\"\\n" FFFD);

	/* Every string attribute and the data get the same treatment. */
	size_t len = 0;
	char *got = event_envelope("id\xff", "/src\xfe", "s3:\xc3", "k\x80", 0,
				   "{\"k\": \"v\xe9\", \"\xff\": [\"\xe2\x98\x83\"]}", &len);
	assert_non_null(got);
	assert_int_equal(strlen(got), len);
	assert_string_equal(got,
			    "{\"specversion\":\"1.0\",\"id\":\"id" FFFD "\",\"source\":\"/src" FFFD
			    "\",\"type\":\"s3:" FFFD "\",\"subject\":\"k" FFFD "\","
			    "\"time\":\"1970-01-01T00:00:00.000000Z\","
			    "\"datacontenttype\":\"application/json\","
			    "\"data\":{\"k\": \"v" FFFD "\", \"" FFFD "\": [\"\xe2\x98\x83\"]}}");
	free(got);
}

static void check_time(int64_t us, const char *want)
{
	char buf[32];
	memset(buf, 'X', sizeof(buf));
	event_format_time(us, buf, sizeof(buf));
	if (strcmp(buf, want) != 0) {
		print_error("event_format_time(%lld): expected %s, got %s\n", (long long)us, want,
			    buf);
		fail();
	}
}

static void test_format_time(void **state)
{
	(void)state;
	check_time(0, "1970-01-01T00:00:00.000000Z");
	check_time(1, "1970-01-01T00:00:00.000001Z");
	check_time(999999, "1970-01-01T00:00:00.999999Z");
	check_time(1000000, "1970-01-01T00:00:01.000000Z");
	check_time(-1, "1969-12-31T23:59:59.999999Z");
	check_time(-999999, "1969-12-31T23:59:59.000001Z");
	check_time(-1000000, "1969-12-31T23:59:59.000000Z");
	check_time(-1000001, "1969-12-31T23:59:58.999999Z");
	check_time(INT64_C(-86400000000), "1969-12-31T00:00:00.000000Z");
	check_time(INT64_C(-14182940000000), "1969-07-20T20:17:40.000000Z");
	check_time(INT64_C(951782400000000), "2000-02-29T00:00:00.000000Z");
	check_time(INT64_C(1735689599999999), "2024-12-31T23:59:59.999999Z");
	check_time(INT64_C(1795718271123456), "2026-11-26T18:37:51.123456Z");
	check_time(INT64_C(-62135596800000000), "0001-01-01T00:00:00.000000Z");
	check_time(INT64_C(253402300799999999), "9999-12-31T23:59:59.999999Z");
	/* Outside 0000..9999 RFC 3339 has no spelling: clamped, never UB. */
	check_time(INT64_C(253402300800000000), "9999-12-31T23:59:59.999999Z");
	check_time(INT64_MAX, "9999-12-31T23:59:59.999999Z");
	check_time(INT64_MIN, "0000-01-01T00:00:00.000000Z");
	/* A short buffer is truncated and still terminated. */
	char small[8];
	event_format_time(0, small, sizeof(small));
	assert_string_equal(small, "1970-01");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_with_subject), cmocka_unit_test(test_without_subject),
	    cmocka_unit_test(test_time_bounds),	 cmocka_unit_test(test_escapes),
	    cmocka_unit_test(test_nested),	 cmocka_unit_test(test_len_optional),
	    cmocka_unit_test(test_format_time),	 cmocka_unit_test(test_invalid_utf8),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
