#include "metrics.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define METRICS_INITIAL_CAP 4096

struct metrics_buf {
	char *data;
	size_t len;
	size_t cap; /* allocated bytes, the NUL included */
	bool failed;
};

/* ---- buffer ---------------------------------------------------------------------------- */

struct metrics_buf *metrics_buf_new(void)
{
	return calloc(1, sizeof(struct metrics_buf));
}

void metrics_buf_free(struct metrics_buf *b)
{
	if (!b)
		return;
	free(b->data);
	free(b);
}

void metrics_buf_reset(struct metrics_buf *b)
{
	b->len = 0;
	b->failed = false;
	if (b->data)
		b->data[0] = '\0';
}

const char *metrics_buf_data(const struct metrics_buf *b)
{
	return b->data ? b->data : "";
}

size_t metrics_buf_len(const struct metrics_buf *b)
{
	return b->len;
}

bool metrics_buf_failed(const struct metrics_buf *b)
{
	return b->failed;
}

static bool reserve(struct metrics_buf *b, size_t n)
{
	if (b->failed)
		return false;
	if (b->cap > 0 && n < b->cap - b->len) /* room for n bytes and the NUL */
		return true;
	size_t need = b->len + n + 1;
	if (need < n) {
		b->failed = true;
		return false;
	}
	size_t cap = b->cap ? b->cap : METRICS_INITIAL_CAP;
	while (cap < need) {
		if (cap > SIZE_MAX / 2) {
			cap = need;
			break;
		}
		cap *= 2;
	}
	char *p = realloc(b->data, cap);
	if (!p) {
		b->failed = true;
		return false;
	}
	b->data = p;
	b->cap = cap;
	return true;
}

void metrics_buf_append(struct metrics_buf *b, const char *s, size_t n)
{
	if (n == 0 || !reserve(b, n))
		return;
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

static void put(struct metrics_buf *b, const char *s)
{
	metrics_buf_append(b, s, strlen(s));
}

static void put_char(struct metrics_buf *b, char c)
{
	metrics_buf_append(b, &c, 1);
}

/* Escape backslash and newline, and the double quote too when quote is set. */
static void put_escaped(struct metrics_buf *b, const char *s, bool quote)
{
	const char *run = s;
	for (; *s; s++) {
		const char *esc = NULL;
		if (*s == '\\')
			esc = "\\\\";
		else if (*s == '\n')
			esc = "\\n";
		else if (*s == '"' && quote)
			esc = "\\\"";
		if (!esc)
			continue;
		metrics_buf_append(b, run, (size_t)(s - run));
		put(b, esc);
		run = s + 1;
	}
	metrics_buf_append(b, run, (size_t)(s - run));
}

/* ---- numbers --------------------------------------------------------------------------- */

void metrics_format_double(double v, char out[METRICS_NUM_LEN])
{
	if (isnan(v)) {
		snprintf(out, METRICS_NUM_LEN, "NaN");
		return;
	}
	if (isinf(v)) {
		snprintf(out, METRICS_NUM_LEN, "%s", v > 0 ? "+Inf" : "-Inf");
		return;
	}
	if (v == 0) {
		snprintf(out, METRICS_NUM_LEN, "0"); /* -0 too */
		return;
	}
	/* Integers below 2^53 are exact: print every digit, never an exponent. */
	if (fabs(v) < 9007199254740992.0 && v == trunc(v)) {
		snprintf(out, METRICS_NUM_LEN, "%.0f", v);
		return;
	}
	/* The shortest of 15, 16 or 17 significant digits that reads back as v. */
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(out, METRICS_NUM_LEN, "%.*g", prec, v);
		if (prec == 17 || strtod(out, NULL) == v)
			return;
	}
}

static void put_double(struct metrics_buf *b, double v)
{
	char num[METRICS_NUM_LEN];
	metrics_format_double(v, num);
	put(b, num);
}

static void put_uint(struct metrics_buf *b, uint64_t v)
{
	char num[METRICS_NUM_LEN];
	snprintf(num, sizeof(num), "%" PRIu64, v);
	put(b, num);
}

/* ---- exposition ------------------------------------------------------------------------ */

void metrics_header(struct metrics_buf *b, const char *name, const char *help, const char *type)
{
	put(b, "# HELP ");
	put(b, name);
	put_char(b, ' ');
	put_escaped(b, help, false);
	put(b, "\n# TYPE ");
	put(b, name);
	put_char(b, ' ');
	put(b, type);
	put_char(b, '\n');
}

/* name{labels[,le="le"]} followed by a space; no braces when there are no labels. */
static void put_series(struct metrics_buf *b, const char *name, const char *suffix,
		       const struct metrics_label *labels, size_t nlabels, const char *le)
{
	put(b, name);
	put(b, suffix);
	if (nlabels > 0 || le) {
		put_char(b, '{');
		for (size_t i = 0; i < nlabels; i++) {
			if (i > 0)
				put_char(b, ',');
			put(b, labels[i].name);
			put(b, "=\"");
			put_escaped(b, labels[i].value ? labels[i].value : "", true);
			put_char(b, '"');
		}
		if (le) {
			put(b, nlabels > 0 ? ",le=\"" : "le=\"");
			put(b, le);
			put_char(b, '"');
		}
		put_char(b, '}');
	}
	put_char(b, ' ');
}

void metrics_sample(struct metrics_buf *b, const char *name, const struct metrics_label *labels,
		    size_t nlabels, double value)
{
	put_series(b, name, "", labels, nlabels, NULL);
	put_double(b, value);
	put_char(b, '\n');
}

void metrics_sample_uint(struct metrics_buf *b, const char *name,
			 const struct metrics_label *labels, size_t nlabels, uint64_t value)
{
	put_series(b, name, "", labels, nlabels, NULL);
	put_uint(b, value);
	put_char(b, '\n');
}

void metrics_histogram(struct metrics_buf *b, const char *name, const struct metrics_label *labels,
		       size_t nlabels, const struct histogram *h)
{
	char le[METRICS_NUM_LEN];
	uint64_t cumulative = 0;
	for (size_t i = 0; i < h->nbounds; i++) {
		cumulative += h->counts[i];
		metrics_format_double(h->bounds[i], le);
		put_series(b, name, "_bucket", labels, nlabels, le);
		put_uint(b, cumulative);
		put_char(b, '\n');
	}
	put_series(b, name, "_bucket", labels, nlabels, "+Inf");
	put_uint(b, h->count);
	put_char(b, '\n');
	put_series(b, name, "_sum", labels, nlabels, NULL);
	put_double(b, h->sum);
	put_char(b, '\n');
	put_series(b, name, "_count", labels, nlabels, NULL);
	put_uint(b, h->count);
	put_char(b, '\n');
}

/* ---- histogram ------------------------------------------------------------------------- */

int histogram_init(struct histogram *h, const double *bounds, size_t n)
{
	memset(h, 0, sizeof(*h));
	if (n > HISTOGRAM_MAX_BOUNDS)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1])))
			return -1;
	}
	for (size_t i = 0; i < n; i++)
		h->bounds[i] = bounds[i];
	h->nbounds = n;
	return 0;
}

void histogram_observe(struct histogram *h, double v)
{
	if (isnan(v))
		return;
	/* The first bound >= v; nbounds (the +Inf bucket) when there is none. */
	size_t lo = 0, hi = h->nbounds;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (v <= h->bounds[mid])
			hi = mid;
		else
			lo = mid + 1;
	}
	h->counts[lo]++;
	h->count++;
	h->sum += v;
}
