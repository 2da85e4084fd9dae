/* fuzz_envelope: event_envelope() against a cJSON-built reference, byte for byte.
 *
 * Input: a 10-byte header (flags, the time, a size knob), then id, source, type and
 * subject separated by NUL bytes, then the data. The data is the rest when cJSON
 * parses it (printed unformatted, as jsonb text is always valid JSON), else the rest
 * as one JSON string (raw bytes, ill-formed UTF-8 included, as a SQL_ASCII database
 * keeps them). Flags wrap the data in deep nesting or blow strings up to huge sizes.
 *
 * The body must be exactly the reference: cJSON's printing of the attributes with
 * ill-formed UTF-8 replaced by U+FFFD (per maximal subpart, fuzz.h), then the data
 * with the same replacement. So it is valid UTF-8, and valid JSON that parses back
 * to the input strings whenever those were valid UTF-8. */
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "fuzz.h"

#define HEADER	    10
#define F_SUBJECT   0x03 /* 0, 3 as given, 1 NULL, 2 "" */
#define F_HUGE	    0x44 /* both: subject and data repeated to up to 64 KB (slow, so rarer) */
#define F_DATA	    0x18 /* 0 the rest, 1 nested, 2 NULL, 3 "" */
#define F_TIME_EDGE 0x20 /* INT64_MIN / INT64_MAX instead of the 8 bytes */
#define HUGE_UNIT   256
#define NEST_STEP   64

struct buf {
	char *s;
	size_t len, cap;
};

static void buf_add(struct buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2;
		b->s = realloc(b->s, b->cap);
		if (b->s == NULL)
			abort();
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

/* The next NUL-terminated field of the input, or "" past its end. */
static char *next_field(const uint8_t **p, const uint8_t *end)
{
	const uint8_t *nul = memchr(*p, '\0', (size_t)(end - *p));
	size_t n = nul ? (size_t)(nul - *p) : (size_t)(end - *p);
	char *s = strndup((const char *)*p, n);
	if (s == NULL)
		abort();
	*p = nul ? nul + 1 : end;
	return s;
}

static char *repeat(const char *s, size_t target)
{
	struct buf b = {NULL, 0, 0};
	buf_add(&b, "", 0);
	size_t n = strlen(s);
	if (n == 0)
		return b.s;
	while (b.len < target)
		buf_add(&b, s, n);
	return b.s;
}

/* The rest of the input as JSON text: itself when cJSON takes it, else a JSON string. */
static char *data_from(const uint8_t *p, size_t n)
{
	cJSON *j = cJSON_ParseWithLength((const char *)p, n);
	if (j == NULL) {
		const uint8_t *nul = memchr(p, '\0', n);
		char *s = strndup((const char *)p, nul ? (size_t)(nul - p) : n);
		if (s == NULL)
			abort();
		j = cJSON_CreateString(s);
		free(s);
	}
	char *text = j ? cJSON_PrintUnformatted(j) : NULL;
	cJSON_Delete(j);
	if (text == NULL)
		abort();
	return text;
}

/* depth levels of arrays and objects around inner. */
static char *nest(const char *inner, size_t depth)
{
	struct buf b = {NULL, 0, 0};
	buf_add(&b, "", 0);
	for (size_t i = 0; i < depth; i++) {
		if (i % 2)
			buf_add(&b, "{\"k\":", 5);
		else
			buf_add(&b, "[1,", 3);
	}
	buf_add(&b, inner, strlen(inner));
	for (size_t i = depth; i-- > 0;)
		buf_add(&b, i % 2 ? "}" : "]", 1);
	return b.s;
}

static void add_clean(cJSON *obj, const char *key, const char *s)
{
	char *clean = fuzz_utf8_clean(s, strlen(s), NULL);
	if (cJSON_AddStringToObject(obj, key, clean) == NULL)
		abort();
	free(clean);
}

/* What the body must be, built with cJSON from the replaced strings. */
static char *reference(const char *id, const char *source, const char *type, const char *subject,
		       int64_t t, const char *data)
{
	char when[32];
	event_format_time(t, when, sizeof(when));
	cJSON *obj = cJSON_CreateObject();
	if (obj == NULL || cJSON_AddStringToObject(obj, "specversion", "1.0") == NULL)
		abort();
	add_clean(obj, "id", id);
	add_clean(obj, "source", source);
	add_clean(obj, "type", type);
	if (subject != NULL && *subject != '\0')
		add_clean(obj, "subject", subject);
	add_clean(obj, "time", when);
	add_clean(obj, "datacontenttype", "application/json");
	char *head = cJSON_PrintUnformatted(obj);
	cJSON_Delete(obj);
	if (head == NULL)
		abort();
	if (data == NULL || *data == '\0')
		data = "{}";
	size_t dlen;
	char *clean = fuzz_utf8_clean(data, strlen(data), &dlen);
	struct buf b = {NULL, 0, 0};
	buf_add(&b, head, strlen(head) - 1); /* without its '}' */
	buf_add(&b, ",\"data\":", 8);
	buf_add(&b, clean, dlen);
	buf_add(&b, "}", 1);
	free(clean);
	cJSON_free(head);
	return b.s;
}

/* The parsed body's string attribute key must be want (when valid UTF-8); an optional
 * one (the subject) is left out when NULL or "". */
static void check_attr(const cJSON *root, const char *key, const char *want, bool optional)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
	if (optional && (want == NULL || *want == '\0')) {
		FUZZ_CHECK(v == NULL, "%s: present, but the input was empty", key);
		return;
	}
	if (!fuzz_utf8_valid(want, strlen(want)))
		return;
	FUZZ_CHECK(cJSON_IsString(v) && strcmp(v->valuestring, want) == 0,
		   "%s: expected \"%s\", got \"%s\"", key, want,
		   cJSON_IsString(v) ? v->valuestring : "(not a string)");
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t h[HEADER] = {0};
	memcpy(h, data, size < HEADER ? size : HEADER);
	const uint8_t *p = data + (size < HEADER ? size : HEADER), *end = data + size;

	int64_t t = 0;
	for (int i = 8; i >= 1; i--)
		t = (int64_t)((uint64_t)t << 8 | h[i]);
	if (h[0] & F_TIME_EDGE)
		t = h[1] & 1 ? INT64_MAX : INT64_MIN;

	char *id = next_field(&p, end);
	char *source = next_field(&p, end);
	char *type = next_field(&p, end);
	char *subject = next_field(&p, end);
	char *json = data_from(p, (size_t)(end - p));

	if ((h[0] & F_HUGE) == F_HUGE) {
		size_t target = ((size_t)h[9] + 1) * HUGE_UNIT;
		char *big = repeat(subject, target);
		free(subject);
		subject = big;
		char *item = nest(json, 1); /* "[1,DATA]": the array repeated */
		struct buf b = {NULL, 0, 0};
		buf_add(&b, "[", 1);
		while (b.len < target) {
			buf_add(&b, item, strlen(item));
			buf_add(&b, ",", 1);
		}
		buf_add(&b, "0]", 2);
		free(item);
		free(json);
		json = b.s;
	}
	const char *subj = subject;
	const char *djson = json;
	switch ((h[0] & F_SUBJECT)) {
	case 1:
		subj = NULL;
		break;
	case 2:
		subj = "";
		break;
	default:
		break;
	}
	switch ((h[0] & F_DATA) >> 3) {
	case 1: {
		char *deep = nest(json, 1 + (size_t)h[9] * NEST_STEP);
		free(json);
		json = deep;
		djson = json;
		break;
	}
	case 2:
		djson = NULL;
		break;
	case 3:
		djson = "";
		break;
	default:
		break;
	}

	size_t len = 0;
	char *got = event_envelope(id, source, type, subj, t, djson, &len);
	FUZZ_CHECK(got != NULL, "event_envelope returned NULL");
	FUZZ_CHECK(strlen(got) == len, "len %zu, strlen %zu", len, strlen(got));
	FUZZ_CHECK(fuzz_utf8_valid(got, len), "the body is not valid UTF-8: %s", got);

	char *want = reference(id, source, type, subj, t, djson);
	FUZZ_CHECK(strlen(want) == len && memcmp(want, got, len) == 0,
		   "expected (%zu bytes): %s\ngot      (%zu bytes): %s", strlen(want), want, len,
		   got);
	free(want);

	/* The body must parse whenever cJSON can parse the data one level down (it stops
	 * at CJSON_NESTING_LIMIT, which deep data reaches). */
	cJSON *root = cJSON_ParseWithLength(got, len);
	if (root == NULL) {
		const char *d = djson && *djson ? djson : "{}";
		char *clean = fuzz_utf8_clean(d, strlen(d), NULL);
		struct buf b = {NULL, 0, 0};
		buf_add(&b, "[", 1);
		buf_add(&b, clean, strlen(clean));
		buf_add(&b, "]", 1);
		cJSON *wrapped = cJSON_Parse(b.s);
		FUZZ_CHECK(wrapped == NULL, "cJSON cannot parse the body: %s", got);
		free(b.s);
		free(clean);
	} else {
		check_attr(root, "id", id, false);
		check_attr(root, "source", source, false);
		check_attr(root, "type", type, false);
		check_attr(root, "subject", subj, true);
		const cJSON *spec = cJSON_GetObjectItemCaseSensitive(root, "specversion");
		FUZZ_CHECK(cJSON_IsString(spec) && strcmp(spec->valuestring, "1.0") == 0,
			   "specversion: %s", got);
		FUZZ_CHECK(cJSON_GetObjectItemCaseSensitive(root, "data") != NULL, "no data: %s",
			   got);
		cJSON_Delete(root);
	}

	free(got);
	free(id);
	free(source);
	free(type);
	free(subject);
	free(json);
	return 0;
}
