/* clock: the monotonic clock in both units, the wall clock against time(),
 * and milliseconds as a timeval. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <cmocka.h>

#include "clock.h"

static void test_mono(void **state)
{
	(void)state;
	uint64_t us = clock_mono_us();
	uint64_t ms = clock_mono_ms();
	uint64_t us2 = clock_mono_us();
	/* Each reading is at least the one before, in the unit it is in. */
	assert_true(ms >= us / 1000);
	assert_true(us2 / 1000 >= ms);
	struct timespec nap = {.tv_nsec = 20 * 1000 * 1000};
	nanosleep(&nap, NULL);
	uint64_t after = clock_mono_ms();
	if (after - ms < 20)
		fail_msg("a 20 ms sleep\n expected: >= 20 ms\n got:      %llu ms",
			 (unsigned long long)(after - ms));
}

static void test_realtime(void **state)
{
	(void)state;
	time_t before = time(NULL);
	int64_t us = clock_realtime_us();
	time_t after = time(NULL);
	if (us / 1000000 < (int64_t)before || us / 1000000 > (int64_t)after)
		fail_msg("the wall clock\n expected: %lld..%lld s\n got:      %lld us",
			 (long long)before, (long long)after, (long long)us);
}

static void test_tv_ms(void **state)
{
	(void)state;
	static const struct {
		uint64_t ms;
		time_t sec;
		suseconds_t usec;
	} cases[] = {
	    {0, 0, 0},		    /* now */
	    {1, 0, 1000},	    /* the smallest step */
	    {999, 0, 999000},	    /* just under a second */
	    {1000, 1, 0},	    /* a second, no microseconds left */
	    {123456, 123, 456000},  /* both parts */
	    {604800000, 604800, 0}, /* a week, the longest duration a config takes */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct timeval tv = clock_tv_ms(cases[i].ms);
		if (tv.tv_sec != cases[i].sec || tv.tv_usec != cases[i].usec)
			fail_msg(
			    "clock_tv_ms(%llu)\n expected: %lld.%06ld s\n got:      %lld.%06ld s",
			    (unsigned long long)cases[i].ms, (long long)cases[i].sec,
			    (long)cases[i].usec, (long long)tv.tv_sec, (long)tv.tv_usec);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_mono),
	    cmocka_unit_test(test_realtime),
	    cmocka_unit_test(test_tv_ms),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
