#include "event.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define US_PER_SEC  INT64_C(1000000)
#define SEC_PER_DAY INT64_C(86400)

/* Days since 1970-01-01 to a proleptic Gregorian civil date (H. Hinnant's
 * civil_from_days); exact for any day count an int64_t of microseconds gives. */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
	z += 719468;
	const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	const unsigned doe = (unsigned)(z - era * 146097);
	const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	const unsigned mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (int64_t)yoe + era * 400 + (*m <= 2);
}

/* The last `width` decimal digits of v, zero-padded, at p. */
static void put_digits(char *p, unsigned v, int width)
{
	for (int i = width - 1; i >= 0; i--) {
		p[i] = (char)('0' + v % 10);
		v /= 10;
	}
}

/* Instants outside the years 0000..9999, which RFC 3339 cannot write, are
 * clamped to the first or last representable microsecond. */
void event_format_time(int64_t unix_us, char *buf, size_t n)
{
	if (buf == NULL || n == 0)
		return;

	/* Floor division, so that -1 us is 1969-12-31T23:59:59.999999Z. */
	int64_t secs = unix_us / US_PER_SEC;
	int64_t frac = unix_us % US_PER_SEC;
	if (frac < 0) {
		frac += US_PER_SEC;
		secs--;
	}
	int64_t days = secs / SEC_PER_DAY;
	int64_t sod = secs % SEC_PER_DAY;
	if (sod < 0) {
		sod += SEC_PER_DAY;
		days--;
	}

	int64_t year;
	unsigned month, day;
	civil_from_days(days, &year, &month, &day);
	if (year < 0) {
		year = 0;
		month = day = 1;
		sod = frac = 0;
	} else if (year > 9999) {
		year = 9999;
		month = 12;
		day = 31;
		sod = SEC_PER_DAY - 1;
		frac = US_PER_SEC - 1;
	}

	/* Written digit by digit, not by snprintf: this runs for every event,
	 * and parsing a format string each time costs more than the digits. */
	char t[sizeof("0000-00-00T00:00:00.000000Z")];
	put_digits(t, (unsigned)year, 4);
	t[4] = '-';
	put_digits(t + 5, month, 2);
	t[7] = '-';
	put_digits(t + 8, day, 2);
	t[10] = 'T';
	put_digits(t + 11, (unsigned)(sod / 3600), 2);
	t[13] = ':';
	put_digits(t + 14, (unsigned)(sod / 60 % 60), 2);
	t[16] = ':';
	put_digits(t + 17, (unsigned)(sod % 60), 2);
	t[19] = '.';
	put_digits(t + 20, (unsigned)frac, 6);
	t[26] = 'Z';
	t[27] = '\0';
	size_t len = n - 1 < sizeof(t) - 1 ? n - 1 : sizeof(t) - 1;
	memcpy(buf, t, len);
	buf[len] = '\0';
}

/* Text from the producer's columns need not be UTF-8 (a SQL_ASCII database stores
 * any bytes), but a receiver must be able to decode the body: each ill-formed
 * sequence becomes U+FFFD, one per maximal subpart (Unicode 3.9, as WHATWG and
 * Python's "replace" do), and well-formed UTF-8 is kept byte for byte.
 * utf8_step() gives the length of the character at p when *valid, else the
 * number of bytes one U+FFFD replaces; the NUL after the text stops it. */
static size_t utf8_step(const unsigned char *p, bool *valid)
{
	unsigned char lo = 0x80, hi = 0xbf; /* the range of the second byte */
	size_t len;
	if (p[0] < 0x80) {
		*valid = true;
		return 1;
	} else if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		len = 2;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		len = 3;
		lo = p[0] == 0xe0 ? 0xa0 : 0x80; /* no overlong forms */
		hi = p[0] == 0xed ? 0x9f : 0xbf; /* no surrogates */
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		len = 4;
		lo = p[0] == 0xf0 ? 0x90 : 0x80; /* no overlong forms */
		hi = p[0] == 0xf4 ? 0x8f : 0xbf; /* nothing above U+10FFFF */
	} else {
		*valid = false; /* a continuation byte, C0, C1 or F5..FF */
		return 1;
	}
	for (size_t i = 1; i < len; i++) {
		if (p[i] < lo || p[i] > hi) {
			*valid = false;
			return i;
		}
		lo = 0x80;
		hi = 0xbf;
	}
	*valid = true;
	return len;
}

static char *json_put_raw(char *out, const char *s, size_t n)
{
	memcpy(out, s, n);
	return out + n;
}

#define UTF8_REPLACEMENT "\xef\xbf\xbd"

/* The length of s (n bytes) with ill-formed UTF-8 replaced; *clean tells whether
 * nothing needed replacing. */
static size_t utf8_clean_len(const char *s, size_t n, bool *clean)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + n;
	size_t out = 0;
	*clean = true;
	while (p < end) {
		if (*p < 0x80) {
			p++;
			out++;
			continue;
		}
		bool valid;
		size_t k = utf8_step(p, &valid);
		out += valid ? k : sizeof(UTF8_REPLACEMENT) - 1;
		*clean = *clean && valid;
		p += k;
	}
	return out;
}

/* Copy the character at p, or U+FFFD for an ill-formed one; *k gets the bytes read. */
static char *utf8_put_char(char *out, const unsigned char *p, size_t *k)
{
	bool valid;
	*k = utf8_step(p, &valid);
	if (!valid)
		return json_put_raw(out, UTF8_REPLACEMENT, sizeof(UTF8_REPLACEMENT) - 1);
	return json_put_raw(out, (const char *)p, *k);
}

/* Copy s (n bytes) with ill-formed UTF-8 replaced. */
static char *utf8_put_clean(char *out, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + n;
	while (p < end) {
		size_t k;
		out = utf8_put_char(out, p, &k);
		p += k;
	}
	return out;
}

/* JSON string escaping as cJSON does it (the golden files were made that
 * way): quote, backslash and control characters escaped, the short forms
 * where JSON has them, well-formed UTF-8 copied as is, ill-formed UTF-8
 * replaced (above). */
static size_t json_escaped_len(const char *s)
{
	size_t n = 2;
	for (const unsigned char *p = (const unsigned char *)s; *p;) {
		if (*p >= 0x80) {
			bool valid;
			size_t k = utf8_step(p, &valid);
			n += valid ? k : sizeof(UTF8_REPLACEMENT) - 1;
			p += k;
			continue;
		}
		if (*p == '"' || *p == '\\' || *p == '\b' || *p == '\f' || *p == '\n' ||
		    *p == '\r' || *p == '\t')
			n += 2;
		else if (*p < 0x20)
			n += 6;
		else
			n++;
		p++;
	}
	return n;
}

static char *json_put_string(char *out, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	*out++ = '"';
	for (const unsigned char *p = (const unsigned char *)s; *p;) {
		if (*p >= 0x80) {
			size_t k;
			out = utf8_put_char(out, p, &k);
			p += k;
			continue;
		}
		char esc = 0;
		switch (*p) {
		case '"':
			esc = '"';
			break;
		case '\\':
			esc = '\\';
			break;
		case '\b':
			esc = 'b';
			break;
		case '\f':
			esc = 'f';
			break;
		case '\n':
			esc = 'n';
			break;
		case '\r':
			esc = 'r';
			break;
		case '\t':
			esc = 't';
			break;
		default:
			break;
		}
		if (esc) {
			*out++ = '\\';
			*out++ = esc;
		} else if (*p < 0x20) {
			memcpy(out, "\\u00", 4);
			out[4] = hex[*p >> 4];
			out[5] = hex[*p & 0xf];
			out += 6;
		} else {
			*out++ = (char)*p;
		}
		p++;
	}
	*out++ = '"';
	return out;
}

#define PUT_LIT(out, lit) json_put_raw(out, lit, sizeof(lit) - 1)

/* Written by hand rather than through a cJSON tree: the envelope is built for
 * every event, and a tree would copy every string (the data included) and
 * grow the printer's buffer step by step. The length is known up front, so
 * one exact-size allocation does. */
char *event_envelope(const char *id, const char *source, const char *type, const char *subject,
		     int64_t time_unix_us, const char *data_json, size_t *len)
{
	if (id == NULL || source == NULL || type == NULL)
		return NULL;
	if (data_json == NULL || *data_json == '\0')
		data_json = "{}";
	bool has_subject = subject != NULL && *subject != '\0';
	char when[32];
	event_format_time(time_unix_us, when, sizeof(when));

	/* jsonb text can carry ill-formed UTF-8 in its strings too; replacing it
	 * there keeps the JSON valid (outside strings the text is ASCII). */
	size_t data_len = strlen(data_json);
	bool data_clean;
	size_t data_out = utf8_clean_len(data_json, data_len, &data_clean);
	size_t n = sizeof("{\"specversion\":\"1.0\",\"id\":,\"source\":,\"type\":,\"time\":,"
			  "\"datacontenttype\":\"application/json\",\"data\":}") -
		   1 + json_escaped_len(id) + json_escaped_len(source) + json_escaped_len(type) +
		   json_escaped_len(when) + data_out;
	if (has_subject)
		n += sizeof(",\"subject\":") - 1 + json_escaped_len(subject);

	char *buf = malloc(n + 1);
	if (buf == NULL)
		return NULL;
	char *p = PUT_LIT(buf, "{\"specversion\":\"1.0\",\"id\":");
	p = json_put_string(p, id);
	p = PUT_LIT(p, ",\"source\":");
	p = json_put_string(p, source);
	p = PUT_LIT(p, ",\"type\":");
	p = json_put_string(p, type);
	if (has_subject) {
		p = PUT_LIT(p, ",\"subject\":");
		p = json_put_string(p, subject);
	}
	p = PUT_LIT(p, ",\"time\":");
	p = json_put_string(p, when);
	p = PUT_LIT(p, ",\"datacontenttype\":\"application/json\",\"data\":");
	p = data_clean ? json_put_raw(p, data_json, data_len)
		       : utf8_put_clean(p, data_json, data_len);
	*p++ = '}';
	*p = '\0';
	if (len != NULL)
		*len = (size_t)(p - buf);
	return buf;
}
