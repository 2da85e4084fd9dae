/* metrics: the exact exposition text for counters, gauges, label escaping and
 * histograms, number formatting and histogram bucketing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

static int setup(void **state)
{
	*state = metrics_buf_new();
	return *state ? 0 : -1;
}

static int teardown(void **state)
{
	metrics_buf_free(*state);
	return 0;
}

static void expect_text(const struct metrics_buf *b, const char *want)
{
	assert_false(metrics_buf_failed(b));
	assert_string_equal(metrics_buf_data(b), want);
	assert_int_equal(metrics_buf_len(b), strlen(want));
}

static void test_empty(void **state)
{
	struct metrics_buf *b = *state;
	expect_text(b, "");
	metrics_buf_append(b, "", 0);
	expect_text(b, "");
	metrics_buf_free(NULL);
}

static void test_counter_without_labels(void **state)
{
	struct metrics_buf *b = *state;
	metrics_header(b, "s3o_notifications_unmatched_total",
		       "Events that matched no endpoint and were removed.", "counter");
	metrics_sample_uint(b, "s3o_notifications_unmatched_total", NULL, 0, 42);
	expect_text(b, "# HELP s3o_notifications_unmatched_total Events that matched no endpoint "
		       "and were removed.\n"
		       "# TYPE s3o_notifications_unmatched_total counter\n"
		       "s3o_notifications_unmatched_total 42\n");
}

static void test_counter_with_labels(void **state)
{
	struct metrics_buf *b = *state;
	struct metrics_label l1[] = {{"endpoint", "storage"}};
	struct metrics_label l2[] = {{"endpoint", "audit"}};
	metrics_header(b, "s3o_notifications_delivered_total", "Deliveries answered with 2xx.",
		       "counter");
	metrics_sample_uint(b, "s3o_notifications_delivered_total", l1, 1, 0);
	metrics_sample_uint(b, "s3o_notifications_delivered_total", l2, 1, UINT64_MAX);
	expect_text(b, "# HELP s3o_notifications_delivered_total Deliveries answered with 2xx.\n"
		       "# TYPE s3o_notifications_delivered_total counter\n"
		       "s3o_notifications_delivered_total{endpoint=\"storage\"} 0\n"
		       "s3o_notifications_delivered_total{endpoint=\"audit\"} "
		       "18446744073709551615\n");
}

static void test_gauge(void **state)
{
	struct metrics_buf *b = *state;
	struct metrics_label two[] = {{"a", "x"}, {"b", "y"}};
	metrics_header(b, "g", "A gauge.", "gauge");
	metrics_sample(b, "g", NULL, 0, 1234567);
	metrics_sample(b, "g", two, 2, 0.25);
	metrics_sample(b, "g", NULL, 0, -3.5);
	expect_text(b, "# HELP g A gauge.\n"
		       "# TYPE g gauge\n"
		       "g 1234567\n"
		       "g{a=\"x\",b=\"y\"} 0.25\n"
		       "g -3.5\n");
}

static void test_label_escaping(void **state)
{
	struct metrics_buf *b = *state;
	struct metrics_label l[] = {{"endpoint", "a\\b\"c\nd"}, {"empty", ""}, {"null", NULL}};
	metrics_sample_uint(b, "m", l, 3, 1);
	expect_text(b, "m{endpoint=\"a\\\\b\\\"c\\nd\",empty=\"\",null=\"\"} 1\n");
}

static void test_help_escaping(void **state)
{
	struct metrics_buf *b = *state;
	/* HELP escapes backslash and newline but leaves double quotes alone. */
	metrics_header(b, "m", "say \"hi\"\\now\nthen", "gauge");
	expect_text(b, "# HELP m say \"hi\"\\\\now\\nthen\n# TYPE m gauge\n");
}

static void check_format(double v, const char *want)
{
	char got[METRICS_NUM_LEN];
	metrics_format_double(v, got);
	if (strcmp(got, want) != 0) {
		print_error("format %.17g: expected \"%s\", got \"%s\"\n", v, want, got);
		fail();
	}
}

static void test_number_format(void **state)
{
	(void)state;
	check_format(0, "0");
	check_format(-0.0, "0");
	check_format(1, "1");
	check_format(-7, "-7");
	check_format(1e15, "1000000000000000");
	check_format(9007199254740991.0, "9007199254740991");
	check_format(0.1, "0.1");
	check_format(0.005, "0.005");
	check_format(2.5, "2.5");
	check_format(1.0 / 3, "0.3333333333333333");
	check_format(0.1 + 0.2, "0.30000000000000004");
	check_format(1e300, "1e+300");
	check_format(5e-324, "4.94065645841247e-324"); /* denormal: 15 digits read back */
	check_format(INFINITY, "+Inf");
	check_format(-INFINITY, "-Inf");
	check_format(NAN, "NaN");

	/* Every non-integer reads back exactly. */
	const double samples[] = {0.1, 1.0 / 3, 2.0 / 3, 123.456, 1e-9, 6.02214076e23, M_PI};
	for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
		char out[METRICS_NUM_LEN];
		metrics_format_double(samples[i], out);
		assert_true(strtod(out, NULL) == samples[i]);
		assert_null(strchr(out, ' '));
	}
}

static const double bounds[] = {0.005, 0.01, 0.1, 1, 2.5};

static void test_histogram(void **state)
{
	struct metrics_buf *b = *state;
	struct histogram h;
	assert_int_equal(histogram_init(&h, bounds, 5), 0);
	/* One value on a bound (le is inclusive), one between, two past the last. */
	const double obs[] = {0.005, 0.05, 0.5, 0.5, 1, 3, 100, NAN};
	for (size_t i = 0; i < sizeof(obs) / sizeof(obs[0]); i++)
		histogram_observe(&h, obs[i]);
	assert_int_equal(h.count, 7); /* NaN ignored */

	struct metrics_label l[] = {{"endpoint", "storage"}};
	metrics_header(b, "d_seconds", "Duration.", "histogram");
	metrics_histogram(b, "d_seconds", l, 1, &h);
	expect_text(b, "# HELP d_seconds Duration.\n"
		       "# TYPE d_seconds histogram\n"
		       "d_seconds_bucket{endpoint=\"storage\",le=\"0.005\"} 1\n"
		       "d_seconds_bucket{endpoint=\"storage\",le=\"0.01\"} 1\n"
		       "d_seconds_bucket{endpoint=\"storage\",le=\"0.1\"} 2\n"
		       "d_seconds_bucket{endpoint=\"storage\",le=\"1\"} 5\n"
		       "d_seconds_bucket{endpoint=\"storage\",le=\"2.5\"} 5\n"
		       "d_seconds_bucket{endpoint=\"storage\",le=\"+Inf\"} 7\n"
		       "d_seconds_sum{endpoint=\"storage\"} 105.055\n"
		       "d_seconds_count{endpoint=\"storage\"} 7\n");
}

static void test_histogram_without_labels(void **state)
{
	struct metrics_buf *b = *state;
	struct histogram h;
	const double one[] = {10};
	assert_int_equal(histogram_init(&h, one, 1), 0);
	metrics_histogram(b, "lag", NULL, 0, &h);
	histogram_observe(&h, -1); /* below every bound: the first bucket */
	histogram_observe(&h, 11);
	metrics_histogram(b, "lag", NULL, 0, &h);
	expect_text(b, "lag_bucket{le=\"10\"} 0\n"
		       "lag_bucket{le=\"+Inf\"} 0\n"
		       "lag_sum 0\n"
		       "lag_count 0\n"
		       "lag_bucket{le=\"10\"} 1\n"
		       "lag_bucket{le=\"+Inf\"} 2\n"
		       "lag_sum 10\n"
		       "lag_count 2\n");
}

static void test_histogram_bounds(void **state)
{
	(void)state;
	struct histogram h;
	double many[HISTOGRAM_MAX_BOUNDS + 1];
	for (size_t i = 0; i < sizeof(many) / sizeof(many[0]); i++)
		many[i] = (double)(i + 1);
	assert_int_equal(histogram_init(&h, many, HISTOGRAM_MAX_BOUNDS), 0);
	for (size_t i = 0; i <= HISTOGRAM_MAX_BOUNDS; i++)
		histogram_observe(&h, (double)i + 0.5);
	for (size_t i = 0; i <= HISTOGRAM_MAX_BOUNDS; i++)
		assert_int_equal(h.counts[i], 1);

	assert_int_equal(histogram_init(&h, many, HISTOGRAM_MAX_BOUNDS + 1), -1);
	assert_int_equal(h.nbounds, 0);
	const double unsorted[] = {1, 0.5};
	const double dup[] = {1, 1};
	const double inf[] = {1, INFINITY};
	const double nan[] = {NAN};
	assert_int_equal(histogram_init(&h, unsorted, 2), -1);
	assert_int_equal(histogram_init(&h, dup, 2), -1);
	assert_int_equal(histogram_init(&h, inf, 2), -1);
	assert_int_equal(histogram_init(&h, nan, 1), -1);
	assert_int_equal(histogram_init(&h, NULL, 0), 0);
	histogram_observe(&h, 1);
	assert_int_equal(h.counts[0], 1);
}

static void test_growth_and_reset(void **state)
{
	struct metrics_buf *b = *state;
	struct metrics_label l[] = {{"endpoint", "an-endpoint-with-a-long-name"}};
	for (int i = 0; i < 10000; i++)
		metrics_sample_uint(b, "s3o_notifications_delivered_total", l, 1, (uint64_t)i);
	assert_false(metrics_buf_failed(b));
	const char *line = "s3o_notifications_delivered_total{endpoint=\"an-endpoint-with-a-long-"
			   "name\"} 9999\n";
	size_t n = metrics_buf_len(b);
	assert_true(n > 10000 * strlen(line) - 10000 * 4);
	assert_string_equal(metrics_buf_data(b) + n - strlen(line), line);
	assert_int_equal(strlen(metrics_buf_data(b)), n);

	metrics_buf_reset(b);
	expect_text(b, "");
	metrics_sample(b, "x", NULL, 0, 1);
	expect_text(b, "x 1\n");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_empty, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_counter_without_labels, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_counter_with_labels, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_gauge, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_label_escaping, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_help_escaping, setup, teardown),
	    cmocka_unit_test(test_number_format),
	    cmocka_unit_test_setup_teardown(test_histogram, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_histogram_without_labels, setup, teardown),
	    cmocka_unit_test(test_histogram_bounds),
	    cmocka_unit_test_setup_teardown(test_growth_and_reset, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
