/* backoff: retry delays with jitter, and Retry-After parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>

#include "backoff.h"

#define MAX_MS UINT64_C(300000) /* the default backoff_max, 5 min */
#define DRAWS  100000

/* xorshift32: small, deterministic, good enough to spread rnd over 32 bits. */
static uint32_t rng_next(uint32_t *s)
{
	uint32_t x = *s;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return *s = x;
}

/* The un-jittered delay, capped: 1 s * 2^(n-1) or max. */
static uint64_t capped_base(unsigned n, uint64_t max)
{
	if (n - 1 >= 40)
		return max;
	uint64_t b = UINT64_C(1000) << (n - 1);
	return b < max ? b : max;
}

static void check_draws(unsigned n, uint64_t max, uint32_t seed)
{
	uint64_t base = capped_base(n, max);
	uint64_t lo = base - base / 5, hi = base + base / 5; /* exact: base % 5 == 0 here */
	uint64_t min_seen = UINT64_MAX, max_seen = 0;
	long double sum = 0;
	uint32_t s = seed;

	for (int i = 0; i < DRAWS; i++) {
		uint64_t d = backoff_delay_ms(n, max, rng_next(&s));
		if (d < lo || d > hi || d > max || d == 0) {
			print_error("n=%u max=%llu: delay %llu outside [%llu, %llu] (cap %llu)\n",
				    n, (unsigned long long)max, (unsigned long long)d,
				    (unsigned long long)lo, (unsigned long long)hi,
				    (unsigned long long)max);
			fail();
		}
		min_seen = d < min_seen ? d : min_seen;
		max_seen = d > max_seen ? d : max_seen;
		sum += (long double)d;
	}
	/* The draws cover the band: near both ends, mean near the middle. */
	long double mean = sum / DRAWS;
	if (hi <= max) {
		assert_true(min_seen <= lo + base / 100);
		assert_true(max_seen >= hi - base / 100);
		if (mean < 0.99L * (long double)base || mean > 1.01L * (long double)base) {
			print_error("n=%u: mean %.1Lf, expected about %llu\n", n, mean,
				    (unsigned long long)base);
			fail();
		}
	} else {
		/* At the cap the upper half of the band is clipped to max. */
		assert_true(min_seen <= lo + base / 100);
		assert_int_equal(max_seen, max);
	}
}

static void test_doubling(void **state)
{
	(void)state;
	/* rnd spans 0..UINT32_MAX: 0 is -20 %, UINT32_MAX is +20 %, the middle is 0 %. */
	assert_int_equal(backoff_delay_ms(1, MAX_MS, 0), 800);
	assert_int_equal(backoff_delay_ms(1, MAX_MS, UINT32_MAX), 1200);
	assert_int_equal(backoff_delay_ms(1, MAX_MS, UINT32_MAX / 2 + 1), 1000);
	assert_int_equal(backoff_delay_ms(2, MAX_MS, 0), 1600);
	assert_int_equal(backoff_delay_ms(2, MAX_MS, UINT32_MAX), 2400);
	assert_int_equal(backoff_delay_ms(3, MAX_MS, UINT32_MAX / 2 + 1), 4000);
	assert_int_equal(backoff_delay_ms(9, MAX_MS, UINT32_MAX / 2 + 1), 256000);
	/* n = 0 is treated as the first retry. */
	assert_int_equal(backoff_delay_ms(0, MAX_MS, 0), 800);
}

static void test_cap(void **state)
{
	(void)state;
	/* 2^9 s = 512 s is past 300 s: capped, then jittered, never above the cap. */
	assert_int_equal(backoff_delay_ms(10, MAX_MS, 0), 240000);
	assert_int_equal(backoff_delay_ms(10, MAX_MS, UINT32_MAX), MAX_MS);
	assert_int_equal(backoff_delay_ms(10, MAX_MS, UINT32_MAX / 2 + 1), MAX_MS);
	assert_int_equal(backoff_delay_ms(1, 500, UINT32_MAX), 500);
	assert_int_equal(backoff_delay_ms(1, 500, 0), 400);
	/* Never 0, even with an absurd cap. */
	assert_int_equal(backoff_delay_ms(1, 1, 0), 1);
	assert_int_equal(backoff_delay_ms(1, 0, 0), 1);
	assert_int_equal(backoff_delay_ms(5, 4, 0), 4);
}

static void test_huge_n(void **state)
{
	(void)state;
	const unsigned ns[] = {31, 32, 53, 54, 55, 63, 64, 65, 1000, UINT_MAX};
	for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
		assert_int_equal(backoff_delay_ms(ns[i], MAX_MS, 0), 240000);
		assert_int_equal(backoff_delay_ms(ns[i], MAX_MS, UINT32_MAX), MAX_MS);
		/* No cap at all: still no overflow. */
		uint64_t lo = backoff_delay_ms(ns[i], UINT64_MAX, 0);
		uint64_t hi = backoff_delay_ms(ns[i], UINT64_MAX, UINT32_MAX);
		assert_true(lo > 0);
		assert_true(hi > lo);
		if (ns[i] > 54) {
			/* Past the largest shift the base is UINT64_MAX itself. */
			assert_int_equal(lo, UINT64_MAX / 5 * 4);
			assert_int_equal(hi, UINT64_MAX);
		}
	}
	/* 1000 << 53 still fits; the delay doubles exactly up to there. */
	assert_int_equal(backoff_delay_ms(54, UINT64_MAX, 0), (UINT64_C(1000) << 53) / 5 * 4);
}

static void test_draw_bounds(void **state)
{
	(void)state;
	for (unsigned n = 1; n <= 12; n++)
		check_draws(n, MAX_MS, 0x9E3779B9u + n);
	check_draws(40, MAX_MS, 12345);
	check_draws(UINT_MAX, MAX_MS, 777);
	check_draws(3, UINT64_C(3600000), 42);
}

static void check_ra(const char *value, time_t now, uint64_t want)
{
	uint64_t got = 12345;
	if (!backoff_parse_retry_after(value, now, &got) || got != want) {
		print_error("Retry-After \"%s\": expected %llu ms, got %llu\n", value,
			    (unsigned long long)want, (unsigned long long)got);
		fail();
	}
}

static void check_ra_bad(const char *value)
{
	uint64_t got = 12345;
	if (backoff_parse_retry_after(value, 784111777, &got)) {
		print_error("Retry-After \"%s\": expected refusal, got %llu ms\n",
			    value ? value : "(null)", (unsigned long long)got);
		fail();
	}
}

static void test_retry_after_seconds(void **state)
{
	(void)state;
	check_ra("120", 0, 120000);
	check_ra("0", 0, 0);
	check_ra("007", 0, 7000);
	check_ra(" 5", 0, 5000);
	check_ra("5 ", 0, 5000);
	check_ra("\t 30 \t", 0, 30000);
	/* Huge values saturate instead of wrapping. */
	check_ra("18446744073709551", 0, UINT64_C(18446744073709551000));
	check_ra("18446744073709552", 0, UINT64_MAX);
	check_ra("18446744073709551615", 0, UINT64_MAX);
	check_ra("99999999999999999999999999999999999999", 0, UINT64_MAX);
	check_ra("18446744073709550", 0, UINT64_C(18446744073709550000));
}

static void test_retry_after_dates(void **state)
{
	(void)state;
	const time_t t = 784111777; /* Sun, 06 Nov 1994 08:49:37 GMT */
	check_ra("Sun, 06 Nov 1994 08:49:37 GMT", t - 90, 90000);
	check_ra("Sun, 06 Nov 1994 08:49:37 GMT", t, 0);
	check_ra("Sun, 06 Nov 1994 08:49:37 GMT", t + 1, 0);
	check_ra("Sun, 06 Nov 1994 08:49:37 GMT", 0, UINT64_C(784111777000));
	check_ra("  Sun, 06 Nov 1994 08:49:37 GMT  ", t - 1, 1000);
	check_ra("Sunday, 06-Nov-94 08:49:37 GMT", t - 2, 2000);
	check_ra("Sun Nov  6 08:49:37 1994", t - 3, 3000);
	check_ra("Wed Nov 16 08:49:37 1994", t, UINT64_C(864000000));
	/* Names are matched without regard to case. */
	check_ra("sun, 06 nov 1994 08:49:37 gmt", t - 4, 4000);
	/* Leap day, year end, and a leap second. */
	check_ra("Tue, 29 Feb 2000 12:00:00 GMT", 951825600 - 60, 60000);
	check_ra("Fri, 31 Dec 9999 23:59:60 GMT", 253402300800 - 1, 1000);
	check_ra("Thu, 01 Jan 1970 00:00:00 GMT", 0, 0);
	check_ra("Thu, 01 Jan 1970 00:00:00 GMT", -10, 10000);
	/* RFC 850 two-digit years: at most 50 years ahead of now, else the
	 * century before. */
	const time_t t2026 = 1795718271; /* 2026-11-26T18:37:51Z */
	check_ra("Thursday, 26-Nov-26 18:38:51 GMT", t2026, 60000);
	check_ra("Friday, 01-Jan-99 00:00:00 GMT", t2026, 0);
	/* 2076-01-01T00:00:00Z is 3345062400. */
	check_ra("Thursday, 01-Jan-76 00:00:00 GMT", t2026,
		 (UINT64_C(3345062400) - UINT64_C(1795718271)) * 1000);
	/* A far-off "now" does not overflow. */
	check_ra("Sun, 06 Nov 1994 08:49:37 GMT", (time_t)INT64_MIN, UINT64_MAX);
	check_ra("Sun, 06 Nov 1994 08:49:37 GMT", (time_t)INT64_MAX, 0);
}

static void test_retry_after_garbage(void **state)
{
	(void)state;
	check_ra_bad(NULL);
	check_ra_bad("");
	check_ra_bad("   ");
	check_ra_bad("-5");
	check_ra_bad("+5");
	check_ra_bad("5s");
	check_ra_bad("1.5");
	check_ra_bad("5 5");
	check_ra_bad("0x10");
	check_ra_bad("1e3");
	check_ra_bad("tomorrow");
	check_ra_bad("Sun, 06 Nov 1994 08:49:37 UTC");
	check_ra_bad("Sun, 06 Nov 1994 08:49:37");
	check_ra_bad("Sun, 06 Nov 1994 08:49:37 GMT x");
	check_ra_bad("Sun, 6 Nov 1994 08:49:37 GMT");
	check_ra_bad("Sun, 06 Nov 94 08:49:37 GMT");
	check_ra_bad("Sun 06 Nov 1994 08:49:37 GMT");
	check_ra_bad("Xyz, 06 Nov 1994 08:49:37 GMT");
	check_ra_bad("Sun, 06 Foo 1994 08:49:37 GMT");
	check_ra_bad("Sun, 32 Nov 1994 08:49:37 GMT");
	check_ra_bad("Sun, 31 Nov 1994 08:49:37 GMT");
	check_ra_bad("Sun, 00 Nov 1994 08:49:37 GMT");
	check_ra_bad("Tue, 29 Feb 1994 08:49:37 GMT");
	check_ra_bad("Sun, 06 Nov 1994 24:00:00 GMT");
	check_ra_bad("Sun, 06 Nov 1994 08:60:00 GMT");
	check_ra_bad("Sun, 06 Nov 1994 08:49:61 GMT");
	check_ra_bad("Sun, 06 Nov 1994 8:49:37 GMT");
	check_ra_bad("Sun, 06 Nov 19940 08:49:37 GMT");
	check_ra_bad("Sunday, 06-Nov-1994 08:49:37 GMT");
	check_ra_bad("Sun Nov 6 08:49:37 1994");
	check_ra_bad("Sun Nov   6 08:49:37 1994");
	check_ra_bad("Sun Nov  6 08:49:37 1994 GMT");
}

static void test_next(void **state)
{
	(void)state;
	const uint32_t mid = UINT32_MAX / 2 + 1;
	/* No Retry-After: the backoff alone. */
	assert_int_equal(backoff_next_ms(1, MAX_MS, 0, mid), 1000);
	/* Retry-After is a minimum... */
	assert_int_equal(backoff_next_ms(1, MAX_MS, 60000, mid), 60000);
	/* ...but not above the cap... */
	assert_int_equal(backoff_next_ms(1, MAX_MS, 3600000, mid), MAX_MS);
	assert_int_equal(backoff_next_ms(1, MAX_MS, UINT64_MAX, 0), MAX_MS);
	/* ...and never shortens the backoff. */
	assert_int_equal(backoff_next_ms(3, MAX_MS, 500, mid), 4000);
	assert_int_equal(backoff_next_ms(10, MAX_MS, 1000, 0), 240000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_doubling),
	    cmocka_unit_test(test_cap),
	    cmocka_unit_test(test_huge_n),
	    cmocka_unit_test(test_draw_bounds),
	    cmocka_unit_test(test_retry_after_seconds),
	    cmocka_unit_test(test_retry_after_dates),
	    cmocka_unit_test(test_retry_after_garbage),
	    cmocka_unit_test(test_next),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
