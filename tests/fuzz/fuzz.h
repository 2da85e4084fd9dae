/* fuzz: helpers shared by the libFuzzer targets in tests/fuzz (built by run.sh).
 * FUZZ_CHECK aborts with both sides printed, so libFuzzer saves the input. */
#ifndef S3O_FUZZ_H
#define S3O_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_CHECK(cond, ...)                                                                      \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* Could the n-byte prefix p of a sequence whose lead byte announces len bytes still
 * complete to a Unicode scalar value written in the shortest form? Worked out from the
 * code point range the prefix leaves open, not from the byte table event.c uses. */
static inline bool fuzz_utf8_prefix_ok(const unsigned char *p, size_t n, size_t len)
{
	static const uint32_t min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
	static const unsigned char lead_bits[] = {0, 0x7f, 0x1f, 0x0f, 0x07};
	uint32_t lo = p[0] & lead_bits[len];
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return false;
		lo = lo << 6 | (p[i] & 0x3f);
	}
	uint32_t hi = lo;
	for (size_t i = n; i < len; i++) {
		lo <<= 6;
		hi = hi << 6 | 0x3f;
	}
	/* [lo, hi] must meet [min_cp, 0xD7FF] or [0xE000, 0x10FFFF]. */
	if (hi < min_cp[len] || lo > 0x10ffff)
		return false;
	if (lo < min_cp[len])
		lo = min_cp[len];
	return !(lo >= 0xd800 && hi <= 0xdfff);
}

/* The length of the maximal subpart at p (Unicode 3.9, U+FFFD substitution of maximal
 * subparts): the whole character when *valid, else the bytes one U+FFFD replaces.
 * p is NUL-terminated; n bytes are left. */
static inline size_t fuzz_utf8_step(const unsigned char *p, size_t n, bool *valid)
{
	size_t len = p[0] < 0x80   ? 1
		     : p[0] < 0xc0 ? 0
		     : p[0] < 0xe0 ? 2
		     : p[0] < 0xf0 ? 3
		     : p[0] < 0xf8 ? 4
				   : 0;
	*valid = len == 1;
	if (len <= 1)
		return 1;
	if (!fuzz_utf8_prefix_ok(p, 1, len))
		return 1;
	size_t k = 1;
	while (k < len && k < n && fuzz_utf8_prefix_ok(p, k + 1, len))
		k++;
	*valid = k == len;
	return k;
}

static inline bool fuzz_utf8_valid(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	for (size_t i = 0; i < n;) {
		bool valid;
		i += fuzz_utf8_step(p + i, n - i, &valid);
		if (!valid)
			return false;
	}
	return true;
}

/* s with every maximal invalid subpart replaced by U+FFFD; malloc'd, NUL-terminated. */
static inline char *fuzz_utf8_clean(const char *s, size_t n, size_t *outlen)
{
	const unsigned char *p = (const unsigned char *)s;
	char *out = malloc(3 * n + 1), *o = out;
	if (out == NULL)
		abort();
	for (size_t i = 0; i < n;) {
		bool valid;
		size_t k = fuzz_utf8_step(p + i, n - i, &valid);
		if (valid) {
			for (size_t j = 0; j < k; j++)
				*o++ = (char)p[i + j];
		} else {
			*o++ = (char)0xef;
			*o++ = (char)0xbf;
			*o++ = (char)0xbd;
		}
		i += k;
	}
	*o = '\0';
	if (outlen != NULL)
		*outlen = (size_t)(o - out);
	return out;
}

#endif
