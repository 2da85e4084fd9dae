/* pattern: glob matching of event types and the prefix rule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pattern.h"

static const char *show(const char *s)
{
	return s != NULL ? s : "(null)";
}

/* Prints both sides on failure. */
static void check(const char *glob, const char *s, bool want)
{
	bool got = pattern_match(glob, s);
	if (got != want) {
		print_error("pattern_match(\"%s\", \"%s\"): expected %s, got %s\n", show(glob),
			    show(s), want ? "true" : "false", got ? "true" : "false");
		fail();
	}
}

static void test_catalog(void **state)
{
	(void)state;
	/* found by fuzz_pattern: after a mismatch a star steps one byte */
	check("*a*\xa9", "aa\xa9", true);
	check("s3:ObjectCreated:*", "s3:ObjectCreated:Put", true);
	check("s3:ObjectCreated:*", "s3:ObjectCreated:Copy", true);
	check("s3:ObjectCreated:*", "s3:ObjectCreated:CompleteMultipartUpload", true);
	check("s3:ObjectCreated:*", "s3:ObjectCreated:", true);
	check("s3:ObjectCreated:*", "s3:ObjectRemoved:Delete", false);
	check("s3:ObjectCreated:*", "s3:ObjectCreated", false);
	check("s3:ObjectRemoved:*", "s3:ObjectRemoved:DeleteBatch", true);
	check("s3:*", "s3:ObjectRemoved:Delete", true);
	check("s3:*", "backend.circuit.opened", false);
	check("backend.*", "backend.circuit.opened", true);
	check("backend.*", "backend.capacity.warning", true);
	check("backend.*", "backend", false);
	check("backend.*", "integrity.corruption_detected", false);
	check("backend.circuit.opened", "backend.circuit.opened", true);
	check("backend.circuit.opened", "backend.circuit.opened2", false);
	check("backend.circuit.opened", "backend.circuit.opene", false);
	check("*.completed", "replication.completed", true);
	check("*.completed", "lifecycle.completed", true);
	check("*.completed", "backend.drain.completed", true);
	check("*.completed", "backend.drain.failed", false);
	check("backend.*.completed", "backend.drain.completed", true);
	check("backend.*.completed", "backend.completed", false);
	/* Literal colons and dots, case-sensitive. */
	check("s3:ObjectCreated:Put", "s3:ObjectCreated:Put", true);
	check("s3:objectcreated:put", "s3:ObjectCreated:Put", false);
	check("s3::*", "s3:ObjectCreated:Put", false);
	check("s3:*:Put", "s3:ObjectCreated:Put", true);
	check("s3:*:Put", "s3:ObjectCreated:Copy", false);
}

static void test_star_question(void **state)
{
	(void)state;
	/* '*' matches everything, the empty string included. */
	check("*", "", true);
	check("*", "anything.at:all", true);
	check("**", "", true);
	check("***", "abc", true);
	/* Empty glob matches only the empty string. */
	check("", "", true);
	check("", "a", false);
	check("a", "", false);
	check("?", "", false);
	check("*?", "", false);
	check("?*", "a", true);
	/* '?' is exactly one character. */
	check("?", "a", true);
	check("?", "ab", false);
	check("??", "ab", true);
	check("a?", "a", false);
	check("ab?", "abc", true);
	check("ab?", "abcd", false);
	check("s3:ObjectCreated:Pu?", "s3:ObjectCreated:Put", true);
	/* Star at the start, in the middle and at the end. */
	check("*Put", "s3:ObjectCreated:Put", true);
	check("*Put", "s3:ObjectCreated:PutX", false);
	check("s3*Put", "s3:ObjectCreated:Put", true);
	check("s3*", "s3", true);
	check("*:*:*", "s3:ObjectCreated:Put", true);
	check("*:*:*", "s3:ObjectCreated", false);
	/* Consecutive stars behave as one. */
	check("s3:**:Put", "s3:ObjectCreated:Put", true);
	check("a**b**c", "abc", true);
	check("a**b**c", "axxbyyc", true);
	check("a**b**c", "axxbyy", false);
	/* Backtracking: the first candidate for the star is not the right one. */
	check("*ab", "aab", true);
	check("*aab", "aaab", true);
	check("a*b*c", "abbbc", true);
	check("a*b?d", "abxbcd", true);
	check("*a?", "bab", true);
	check("*a?", "ba", false);
	check("*.*", "a.b.c", true);
	/* '?' and a star step over whole UTF-8 characters. */
	check("caf?", "caf\xc3\xa9", true);
	check("caf??", "caf\xc3\xa9", false);
	check("*\xc3\xa9", "caf\xc3\xa9", true);
	check("?\xe2\x98\x83?", "a\xe2\x98\x83\xf0\x9f\x98\x80", true);
	/* NULL is never a match. */
	check(NULL, "a", false);
	check("*", NULL, false);
}

/* Many stars over a long string that almost matches: a naive recursive
 * matcher takes exponential time here; the iterative one is O(n * m). */
static void test_not_exponential(void **state)
{
	(void)state;
	enum { LEN = 20000, STARS = 60 };
	char *s = malloc(LEN + 1);
	char *glob = malloc(2 * STARS + 2);
	assert_non_null(s);
	assert_non_null(glob);
	memset(s, 'a', LEN);
	s[LEN] = '\0';
	size_t k = 0;
	for (int i = 0; i < STARS; i++) {
		glob[k++] = '*';
		glob[k++] = 'a';
	}
	glob[k++] = 'b';
	glob[k] = '\0';

	clock_t t0 = clock();
	check(glob, s, false);
	s[LEN - 1] = 'b';
	check(glob, s, true);
	check("*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b", s, true);
	double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
	if (secs > 5.0) {
		print_error("glob with %d stars on %d chars took %.2f s, expected well under 5 s\n",
			    STARS, LEN, secs);
		fail();
	}
	free(s);
	free(glob);
}

static void test_data_event(void **state)
{
	(void)state;
	assert_true(pattern_is_data_event("s3:ObjectCreated:Put"));
	assert_true(pattern_is_data_event("s3:"));
	assert_false(pattern_is_data_event("s3"));
	assert_false(pattern_is_data_event("S3:ObjectCreated:Put"));
	assert_false(pattern_is_data_event("backend.circuit.opened"));
	assert_false(pattern_is_data_event("xs3:foo"));
	assert_false(pattern_is_data_event(""));
	assert_false(pattern_is_data_event(NULL));
}

static void test_prefix_rule(void **state)
{
	(void)state;
	/* An empty (or absent) prefix passes everything. */
	assert_true(pattern_prefix_passes("", "s3:ObjectCreated:Put", "a.jpg"));
	assert_true(pattern_prefix_passes("", "s3:ObjectCreated:Put", NULL));
	assert_true(pattern_prefix_passes(NULL, "s3:ObjectCreated:Put", NULL));
	assert_true(pattern_prefix_passes("", "backend.circuit.opened", NULL));
	/* Data events pass only when the subject starts with the prefix. */
	assert_true(pattern_prefix_passes("uploads/", "s3:ObjectCreated:Put", "uploads/a.jpg"));
	assert_true(pattern_prefix_passes("uploads/", "s3:ObjectCreated:Put", "uploads/"));
	assert_false(pattern_prefix_passes("uploads/", "s3:ObjectCreated:Put", "uploads"));
	assert_false(pattern_prefix_passes("uploads/", "s3:ObjectCreated:Put", "photos/a.jpg"));
	assert_false(pattern_prefix_passes("uploads/", "s3:ObjectCreated:Put", "Uploads/a.jpg"));
	assert_false(pattern_prefix_passes("uploads/", "s3:ObjectCreated:Put", ""));
	assert_false(pattern_prefix_passes("uploads/", "s3:ObjectRemoved:DeleteBatch", NULL));
	/* The prefix is literal, not a glob. */
	assert_false(pattern_prefix_passes("up*", "s3:ObjectCreated:Put", "uploads/a.jpg"));
	assert_true(pattern_prefix_passes("up*", "s3:ObjectCreated:Put", "up*/a.jpg"));
	/* Operational events ignore the prefix, subject or not. */
	assert_true(pattern_prefix_passes("uploads/", "backend.circuit.opened", "b2-eu"));
	assert_true(pattern_prefix_passes("uploads/", "integrity.corruption_detected", "x/y"));
	assert_true(pattern_prefix_passes("uploads/", "replication.completed", NULL));
	assert_true(pattern_prefix_passes("uploads/", "lifecycle.delete", "photos/a.jpg"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_catalog),	    cmocka_unit_test(test_star_question),
	    cmocka_unit_test(test_not_exponential), cmocka_unit_test(test_data_event),
	    cmocka_unit_test(test_prefix_rule),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
