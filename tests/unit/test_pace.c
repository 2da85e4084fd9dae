/* pace: the decision after a claim of new events (claim again now, after a
 * pause, or wait for a wake-up; take the busy lock or not) and the wait of
 * outcomes for a larger settlement, at and around each threshold. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "pace.h"

struct claim_case {
	const char *what;
	unsigned rows, asked;
	uint64_t span_us;
	bool was_loaded;
	struct pace want;
};

static void test_after_claim(void **state)
{
	(void)state;
	/* 500 rows a second is 5 rows in 10 ms. */
	static const struct claim_case cases[] = {
	    {"a full claim: a backlog, claim on at once, busy",
	     200,
	     200,
	     1000000,
	     false,
	     {.loaded = false, .busy = true, .claim_now = true, .wait = false}},
	    {"a full fast claim",
	     200,
	     200,
	     1000,
	     false,
	     {.loaded = true, .busy = true, .claim_now = true, .wait = false}},
	    {"one row is never load",
	     1,
	     200,
	     0,
	     true,
	     {.loaded = false, .busy = false, .claim_now = true, .wait = false}},
	    {"exactly PACE_MIN_RATE: load, pause, no lock yet",
	     5,
	     200,
	     10000,
	     false,
	     {.loaded = true, .busy = false, .claim_now = false, .wait = true}},
	    {"just under PACE_MIN_RATE: claim on at once",
	     5,
	     200,
	     10001,
	     false,
	     {.loaded = false, .busy = false, .claim_now = true, .wait = false}},
	    {"load twice in a row: pause and take the lock",
	     5,
	     200,
	     10000,
	     true,
	     {.loaded = true, .busy = true, .claim_now = false, .wait = true}},
	    {"a light stream after load: no lock",
	     2,
	     200,
	     1000000,
	     true,
	     {.loaded = false, .busy = false, .claim_now = true, .wait = false}},
	    {"two rows at once (span 0)",
	     2,
	     200,
	     0,
	     false,
	     {.loaded = true, .busy = false, .claim_now = false, .wait = true}},
	    {"more rows than asked counts as full",
	     3,
	     2,
	     1000000,
	     false,
	     {.loaded = false, .busy = true, .claim_now = true, .wait = false}},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct claim_case *c = &cases[i];
		struct pace got = pace_after_claim(c->rows, c->asked, c->span_us, c->was_loaded);
		if (got.loaded != c->want.loaded || got.busy != c->want.busy ||
		    got.claim_now != c->want.claim_now || got.wait != c->want.wait)
			fail_msg("%s: pace_after_claim(%u, %u, %llu, %d)\n"
				 " expected: loaded %d busy %d claim_now %d wait %d\n"
				 " got:      loaded %d busy %d claim_now %d wait %d",
				 c->what, c->rows, c->asked, (unsigned long long)c->span_us,
				 c->was_loaded, c->want.loaded, c->want.busy, c->want.claim_now,
				 c->want.wait, got.loaded, got.busy, got.claim_now, got.wait);
	}
}

struct settle_case {
	const char *what;
	bool paced;
	unsigned jobs;
	uint64_t since_us, now_us, want;
};

static void test_settle_wait(void **state)
{
	(void)state;
	static const struct settle_case cases[] = {
	    {"not paced: settle now", false, 1, 1000, 1000, 0},
	    {"paced, few, just pending: wait out PACE_MS", true, 1, 1000, 1000, PACE_MS * 1000},
	    {"paced, few, 2 ms on", true, 1, 1000, 3000, PACE_MS * 1000 - 2000},
	    {"paced, few, at the deadline", true, 1, 1000, 1000 + PACE_MS * 1000, 0},
	    {"paced, few, past it", true, 1, 1000, 99000, 0},
	    {"paced, one short of enough", true, PACE_SETTLE_MIN_JOBS - 1, 1000, 1000,
	     PACE_MS * 1000},
	    {"paced, enough to settle now", true, PACE_SETTLE_MIN_JOBS, 1000, 1000, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct settle_case *c = &cases[i];
		uint64_t got = pace_settle_wait_us(c->paced, c->jobs, c->since_us, c->now_us);
		if (got != c->want)
			fail_msg("%s\n expected: %llu us\n got:      %llu us", c->what,
				 (unsigned long long)c->want, (unsigned long long)got);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_after_claim),
	    cmocka_unit_test(test_settle_wait),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
