/* fuzz_retry_after: backoff_parse_retry_after() and backoff_next_ms().
 *
 * Input: a Retry-After header value (cut at a NUL), parsed at a few fixed "now"s.
 * Checked: delta-seconds against a plain saturating parse; a date gives a whole
 * number of seconds that shrinks by exactly what "now" grows by (down to 0), never
 * past 9999-12-31T23:59:60Z; the result does not depend on "now" for delta-seconds. Then the
 * parsed value goes through backoff_next_ms() with fixed attempts and caps: the
 * delay stays within its jitter band and the cap, and Retry-After (capped) is a floor.
 * An IMF-fixdate that glibc's strptime reads too must give the same instant. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backoff.h"
#include "fuzz.h"

#define NOW_2026   ((time_t)1795718271) /* 2026-11-26T18:37:51Z */
#define YEAR_10000 INT64_C(253402300800)

static bool is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Delta-seconds as RFC 9110 has them: digits only (whitespace around), saturating. */
static bool ref_delta(const char *s, uint64_t *ms)
{
	size_t a = 0, b = strlen(s);
	while (a < b && is_ws(s[a]))
		a++;
	while (b > a && is_ws(s[b - 1]))
		b--;
	if (a == b || s[a] < '0' || s[a] > '9')
		return false;
	uint64_t v = 0;
	bool sat = false;
	for (size_t i = a; i < b; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, s[i] - '0', &v))
			sat = true;
	}
	if (sat || __builtin_mul_overflow(v, 1000, &v))
		v = UINT64_MAX;
	*ms = v;
	return true;
}

/* One backoff_next_ms() call against its definition. */
static void check_one(unsigned n, uint64_t max_ms, uint32_t rnd, uint64_t ra)
{
	uint64_t max = max_ms ? max_ms : 1;
	uint64_t delay = backoff_delay_ms(n, max_ms, rnd);
	uint64_t next = backoff_next_ms(n, max_ms, ra, rnd);
	unsigned shift = n ? n - 1 : 0;
	uint64_t base = shift > 53 ? max : (uint64_t)1000 << shift;
	base = base < max ? base : max;
	uint64_t lo = base - base / 5;
	/* lo .. lo + 2 (base / 5), the cap aside; 0 is raised to 1. */
	bool in_band = delay >= lo && delay - lo <= 2 * (base / 5);
	FUZZ_CHECK(delay >= 1 && delay <= max && (delay == 1 || in_band),
		   "backoff_delay_ms(%u, %llu, %u) = %llu (base %llu)", n,
		   (unsigned long long)max_ms, rnd, (unsigned long long)delay,
		   (unsigned long long)base);
	uint64_t floor = ra < max ? ra : max;
	FUZZ_CHECK(next == (floor > delay ? floor : delay) && next <= max,
		   "backoff_next_ms(%u, %llu, %llu, %u) = %llu, delay %llu", n,
		   (unsigned long long)max_ms, (unsigned long long)ra, rnd,
		   (unsigned long long)next, (unsigned long long)delay);
}

static void check_next(uint64_t ra)
{
	static const unsigned ns[] = {0, 1, 2, 5, 30, 53, 54, 64, 1000, UINT32_MAX};
	static const uint64_t maxes[] = {0, 1, 999, 1000, 300000, UINT64_MAX / 2, UINT64_MAX};
	static const uint32_t rnds[] = {0, 1, UINT32_MAX / 2, UINT32_MAX - 1, UINT32_MAX};
	for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++)
		for (size_t j = 0; j < sizeof(maxes) / sizeof(maxes[0]); j++)
			for (size_t k = 0; k < sizeof(rnds) / sizeof(rnds[0]); k++)
				check_one(ns[i], maxes[j], rnds[k], ra);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (s == NULL)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';

	/* Success may depend on "now" only through the century of a two-digit year. */
	static const time_t nows[] = {0, NOW_2026, (time_t)INT64_MAX, (time_t)INT64_MIN, -1};
	uint64_t ms[sizeof(nows) / sizeof(nows[0])];
	bool ok[sizeof(nows) / sizeof(nows[0])];
	for (size_t i = 0; i < sizeof(nows) / sizeof(nows[0]); i++) {
		ms[i] = 12345;
		ok[i] = backoff_parse_retry_after(s, nows[i], &ms[i]);
		if (!ok[i])
			FUZZ_CHECK(ms[i] == 12345, "\"%s\": failed but wrote %llu", s,
				   (unsigned long long)ms[i]);
	}

	uint64_t want;
	if (ref_delta(s, &want)) {
		for (size_t i = 0; i < sizeof(nows) / sizeof(nows[0]); i++)
			FUZZ_CHECK(ok[i] && ms[i] == want, "\"%s\": expected %llu ms, got %d %llu",
				   s, (unsigned long long)want, ok[i], (unsigned long long)ms[i]);
	} else if (ok[1]) {
		/* An HTTP date: whole seconds (saturated only before the epoch's dawn). */
		for (size_t i = 0; i < sizeof(nows) / sizeof(nows[0]); i++) {
			if (!ok[i])
				continue;
			FUZZ_CHECK(ms[i] % 1000 == 0 || (ms[i] == UINT64_MAX && nows[i] < 0),
				   "\"%s\": %llu ms", s, (unsigned long long)ms[i]);
			if (nows[i] >= 0)
				FUZZ_CHECK(ms[i] / 1000 <= (uint64_t)(YEAR_10000 - nows[i]),
					   "\"%s\": %llu ms is past 9999-12-31T23:59:60Z", s,
					   (unsigned long long)ms[i]);
			if (nows[i] == (time_t)INT64_MAX)
				FUZZ_CHECK(ms[i] == 0, "\"%s\": in the future at the end of time",
					   s);
		}
		/* "now" moving on by 1 s or 1 h takes as much off, down to 0. */
		uint64_t a, b;
		FUZZ_CHECK(backoff_parse_retry_after(s, NOW_2026 + 1, &a) &&
			       backoff_parse_retry_after(s, NOW_2026 + 3600, &b),
			   "\"%s\" parsed at one now, not at another", s);
		FUZZ_CHECK(a == (ms[1] >= 1000 ? ms[1] - 1000 : 0) &&
			       b == (ms[1] >= 3600000 ? ms[1] - 3600000 : 0),
			   "\"%s\": %llu ms at now, %llu at now + 1 s, %llu at now + 1 h", s,
			   (unsigned long long)ms[1], (unsigned long long)a, (unsigned long long)b);
		/* An IMF-fixdate after the epoch against glibc's strptime and timegm. */
		struct tm tm;
		memset(&tm, 0, sizeof(tm));
		const char *t = s + strspn(s, " \t\r\n");
		const char *end = strptime(t, "%a, %d %b %Y %H:%M:%S GMT", &tm);
		if (ok[0] && ms[0] > 0 && end != NULL && end[strspn(end, " \t\r\n")] == '\0') {
			time_t when = timegm(&tm);
			FUZZ_CHECK(when >= 0 && (uint64_t)when == ms[0] / 1000,
				   "\"%s\": %llu s after the epoch, timegm says %lld", s,
				   (unsigned long long)(ms[0] / 1000), (long long)when);
		}
	}

	if (ok[1]) {
		check_next(ms[1]);
		check_next(0);
	}
	free(s);
	return 0;
}
