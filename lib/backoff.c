#include "backoff.h"

#include <stddef.h>
#include <string.h>

#define BACKOFF_BASE_MS 1000u
/* 1000 << 53 < 2^63: any larger shift is past every sensible cap anyway. */
#define BACKOFF_MAX_SHIFT 53u

uint64_t backoff_delay_ms(unsigned n, uint64_t max_ms, uint32_t rnd)
{
	if (max_ms == 0)
		max_ms = 1;
	unsigned shift = n > 0 ? n - 1 : 0;
	uint64_t base = shift > BACKOFF_MAX_SHIFT ? UINT64_MAX : (uint64_t)BACKOFF_BASE_MS << shift;
	if (base > max_ms)
		base = max_ms;

	/* delay = lo + floor(span * rnd / UINT32_MAX), lo = 0.8 base and span =
	 * 0.4 base, so rnd 0 and UINT32_MAX give the two ends. With span = q M + r
	 * (M = UINT32_MAX) that is q rnd + floor(r rnd / M): no product overflows. */
	uint64_t fifth = base / 5;
	uint64_t lo = base - fifth;
	uint64_t span = 2 * fifth;
	uint64_t off = span / UINT32_MAX * rnd + span % UINT32_MAX * rnd / UINT32_MAX;

	uint64_t delay = off > max_ms - lo ? max_ms : lo + off;
	return delay == 0 ? 1 : delay;
}

uint64_t backoff_next_ms(unsigned n, uint64_t max_ms, uint64_t retry_after_ms, uint32_t rnd)
{
	uint64_t delay = backoff_delay_ms(n, max_ms, rnd);
	uint64_t ra = retry_after_ms < max_ms ? retry_after_ms : max_ms;
	return ra > delay ? ra : delay;
}

/* --- Retry-After ------------------------------------------------------- */

static bool is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static uint64_t mul_sat(uint64_t a, uint64_t b)
{
	if (a != 0 && b > UINT64_MAX / a)
		return UINT64_MAX;
	return a * b;
}

/* Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	const int64_t era = (y >= 0 ? y : y - 399) / 400;
	const unsigned yoe = (unsigned)(y - era * 400);
	const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static unsigned days_in_month(int64_t y, unsigned m)
{
	static const unsigned dim[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	return m == 2 && leap ? 29 : dim[m - 1];
}

/* A cursor over the part of the value between the trimmed ends. */
struct cur {
	const char *p;
	const char *end;
};

static char ascii_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* The literal s, ASCII case-insensitive (whatever the locale). */
static bool lit(struct cur *c, const char *s)
{
	size_t n = strlen(s);
	if ((size_t)(c->end - c->p) < n)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (ascii_lower(c->p[i]) != ascii_lower(s[i]))
			return false;
	}
	c->p += n;
	return true;
}

/* Exactly min..max digits. */
static bool num(struct cur *c, unsigned min, unsigned max, unsigned *out)
{
	unsigned v = 0, k = 0;
	while (k < max && c->p < c->end && is_digit(*c->p)) {
		v = v * 10 + (unsigned)(*c->p++ - '0');
		k++;
	}
	if (k < min || (c->p < c->end && is_digit(*c->p)))
		return false;
	*out = v;
	return true;
}

/* One of the names in list (case-insensitive); its index in *out. */
static bool name(struct cur *c, const char *const *list, unsigned count, unsigned *out)
{
	for (unsigned i = 0; i < count; i++) {
		if (lit(c, list[i])) {
			*out = i;
			return true;
		}
	}
	return false;
}

static const char *const wkday[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
static const char *const weekday[] = {"Monday", "Tuesday",  "Wednesday", "Thursday",
				      "Friday", "Saturday", "Sunday"};
static const char *const month_names[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
					  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

struct hdate {
	unsigned year, mon, day, hh, mm, ss;
};

static bool hms(struct cur *c, struct hdate *t)
{
	return num(c, 2, 2, &t->hh) && lit(c, ":") && num(c, 2, 2, &t->mm) && lit(c, ":") &&
	       num(c, 2, 2, &t->ss);
}

/* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
static bool parse_imf(struct cur c, struct hdate *t)
{
	unsigned ign;
	return name(&c, wkday, 7, &ign) && lit(&c, ", ") && num(&c, 2, 2, &t->day) &&
	       lit(&c, " ") && name(&c, month_names, 12, &t->mon) && lit(&c, " ") &&
	       num(&c, 4, 4, &t->year) && lit(&c, " ") && hms(&c, t) && lit(&c, " GMT") &&
	       c.p == c.end;
}

/* RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT"; a two-digit year is taken in
 * the century that puts it at most 50 years after now (RFC 9110, 5.6.7). */
static bool parse_rfc850(struct cur c, struct hdate *t, unsigned now_year)
{
	unsigned ign;
	if (!(name(&c, weekday, 7, &ign) && lit(&c, ", ") && num(&c, 2, 2, &t->day) &&
	      lit(&c, "-") && name(&c, month_names, 12, &t->mon) && lit(&c, "-") &&
	      num(&c, 2, 2, &t->year) && lit(&c, " ") && hms(&c, t) && lit(&c, " GMT") &&
	      c.p == c.end))
		return false;
	unsigned year = now_year / 100 * 100 + t->year;
	if (year > now_year + 50)
		year -= 100;
	t->year = year;
	return true;
}

/* asctime: "Sun Nov  6 08:49:37 1994" (day padded with a space) */
static bool parse_asctime(struct cur c, struct hdate *t)
{
	unsigned ign;
	if (!(name(&c, wkday, 7, &ign) && lit(&c, " ") && name(&c, month_names, 12, &t->mon) &&
	      lit(&c, " ")))
		return false;
	if (!lit(&c, " ")) {
		if (!num(&c, 2, 2, &t->day))
			return false;
	} else if (!num(&c, 1, 1, &t->day)) {
		return false;
	}
	return lit(&c, " ") && hms(&c, t) && lit(&c, " ") && num(&c, 4, 4, &t->year) &&
	       c.p == c.end;
}

static int64_t year_of(time_t now)
{
	int64_t days = (int64_t)now / 86400 - ((int64_t)now % 86400 < 0);
	/* Rough is enough: only used to place a two-digit year in a century. */
	return 1970 + (days * 400) / 146097;
}

static bool parse_http_date(struct cur c, time_t now, int64_t *out)
{
	struct hdate t = {0};
	int64_t ny = year_of(now);
	unsigned now_year = ny < 0 ? 0 : ny > 9999 ? 9999 : (unsigned)ny;

	if (!parse_imf(c, &t) && !parse_rfc850(c, &t, now_year) && !parse_asctime(c, &t))
		return false;
	t.mon += 1; /* name() gives 0-based */
	if (t.day < 1 || t.day > days_in_month(t.year, t.mon) || t.hh > 23 || t.mm > 59 ||
	    t.ss > 60)
		return false;
	*out = days_from_civil(t.year, t.mon, t.day) * 86400 + t.hh * 3600 + t.mm * 60 + t.ss;
	return true;
}

bool backoff_parse_retry_after(const char *value, time_t now, uint64_t *out_ms)
{
	if (value == NULL || out_ms == NULL)
		return false;
	struct cur c = {value, value + strlen(value)};
	while (c.p < c.end && is_ws(*c.p))
		c.p++;
	while (c.end > c.p && is_ws(c.end[-1]))
		c.end--;
	if (c.p == c.end)
		return false;

	if (is_digit(*c.p)) {
		/* delta-seconds: digits only, saturating instead of overflowing. */
		uint64_t secs = 0;
		for (const char *p = c.p; p < c.end; p++) {
			if (!is_digit(*p))
				return false;
			unsigned d = (unsigned)(*p - '0');
			secs = secs > (UINT64_MAX - d) / 10 ? UINT64_MAX : secs * 10 + d;
		}
		*out_ms = mul_sat(secs, 1000);
		return true;
	}

	int64_t when;
	if (!parse_http_date(c, now, &when))
		return false;
	int64_t n = (int64_t)now;
	if (n >= when) {
		*out_ms = 0;
		return true;
	}
	/* Both fit in int64_t, so the true difference fits in uint64_t. */
	*out_ms = mul_sat((uint64_t)when - (uint64_t)n, 1000);
	return true;
}
