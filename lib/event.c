#include "event.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
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

	snprintf(buf, n, "%04d-%02u-%02uT%02d:%02d:%02d.%06dZ", (int)year, month, day,
		 (int)(sod / 3600), (int)(sod / 60 % 60), (int)(sod % 60), (int)frac);
}

char *event_envelope(const char *id, const char *source, const char *type, const char *subject,
		     int64_t time_unix_us, const char *data_json, size_t *len)
{
	char when[32];
	char *out = NULL;
	char *printed = NULL;

	if (id == NULL || source == NULL || type == NULL)
		return NULL;
	if (data_json == NULL || *data_json == '\0')
		data_json = "{}";
	event_format_time(time_unix_us, when, sizeof(when));

	/* cJSON keeps members in insertion order, which is the wire order. */
	cJSON *root = cJSON_CreateObject();
	if (root == NULL)
		return NULL;
	if (cJSON_AddStringToObject(root, "specversion", "1.0") == NULL ||
	    cJSON_AddStringToObject(root, "id", id) == NULL ||
	    cJSON_AddStringToObject(root, "source", source) == NULL ||
	    cJSON_AddStringToObject(root, "type", type) == NULL)
		goto done;
	if (subject != NULL && *subject != '\0' &&
	    cJSON_AddStringToObject(root, "subject", subject) == NULL)
		goto done;
	if (cJSON_AddStringToObject(root, "time", when) == NULL ||
	    cJSON_AddStringToObject(root, "datacontenttype", "application/json") == NULL ||
	    cJSON_AddRawToObject(root, "data", data_json) == NULL)
		goto done;

	printed = cJSON_PrintUnformatted(root);
	if (printed == NULL)
		goto done;
	/* Copy into a plain malloc() buffer: cJSON allocates through its hooks,
	 * which someone may have replaced, and the caller frees with free(). */
	size_t n = strlen(printed);
	out = malloc(n + 1);
	if (out == NULL)
		goto done;
	memcpy(out, printed, n + 1);
	if (len != NULL)
		*len = n;
done:
	cJSON_free(printed);
	cJSON_Delete(root);
	return out;
}
