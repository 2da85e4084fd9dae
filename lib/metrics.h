/* metrics: the Prometheus text exposition format 0.0.4, and histograms.
 * struct metrics_buf is a growable text buffer: metrics_buf_new() / metrics_buf_free();
 * the writers never fail outright, an allocation failure is sticky and reported by
 * metrics_buf_failed() (the text is then incomplete and must not be served).
 * struct histogram is plain data, embedded by its owner: no allocation, nothing to free. */
#ifndef S3O_METRICS_H
#define S3O_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define HISTOGRAM_MAX_BOUNDS 16

struct metrics_buf;

/* A label; the value is escaped on output (backslash, double quote, newline). */
struct metrics_label {
	const char *name;
	const char *value;
};

struct histogram {
	size_t nbounds;
	double bounds[HISTOGRAM_MAX_BOUNDS];	   /* upper bounds (le), strictly increasing */
	uint64_t counts[HISTOGRAM_MAX_BOUNDS + 1]; /* per bucket, not cumulative; last = +Inf */
	uint64_t count;
	double sum;
};

struct metrics_buf *metrics_buf_new(void) __attribute__((warn_unused_result));
void metrics_buf_free(struct metrics_buf *b);
void metrics_buf_reset(struct metrics_buf *b);
/* The text so far, NUL-terminated ("" when empty); valid until the next write or free. */
const char *metrics_buf_data(const struct metrics_buf *b);
size_t metrics_buf_len(const struct metrics_buf *b);
bool metrics_buf_failed(const struct metrics_buf *b);
void metrics_buf_append(struct metrics_buf *b, const char *s, size_t n);

/* "# HELP name help" (help escaped) and "# TYPE name type", type = "counter", "gauge"
 * or "histogram". Write it once per metric name, before that name's samples. */
void metrics_header(struct metrics_buf *b, const char *name, const char *help, const char *type);
/* One sample line: name{labels} value. labels may be NULL when nlabels is 0. */
void metrics_sample(struct metrics_buf *b, const char *name, const struct metrics_label *labels,
		    size_t nlabels, double value);
/* The same with an exact integer (counters). */
void metrics_sample_uint(struct metrics_buf *b, const char *name,
			 const struct metrics_label *labels, size_t nlabels, uint64_t value);
/* name_bucket{labels,le="..."} lines (cumulative, ending with le="+Inf"), name_sum and
 * name_count, all with labels. */
void metrics_histogram(struct metrics_buf *b, const char *name, const struct metrics_label *labels,
		       size_t nlabels, const struct histogram *h);

/* Value formatting as Prometheus reads it: integers without exponent, other values
 * with the shortest text that reads back exactly, "+Inf", "-Inf", "NaN". out must
 * hold METRICS_NUM_LEN bytes. */
#define METRICS_NUM_LEN 32
void metrics_format_double(double v, char out[METRICS_NUM_LEN]);

/* Set the bucket bounds (n <= HISTOGRAM_MAX_BOUNDS, finite, strictly increasing) and
 * zero the counts. Returns -1, leaving h empty with no bounds, on bad bounds. */
int histogram_init(struct histogram *h, const double *bounds, size_t n)
    __attribute__((warn_unused_result));
/* Count v in the first bucket with v <= bound (or +Inf); O(log n), no allocation.
 * NaN is ignored so that it cannot poison the sum. */
void histogram_observe(struct histogram *h, double v);

#endif
