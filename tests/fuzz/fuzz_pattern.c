/* fuzz_pattern: pattern_match() and pattern_prefix_passes().
 *
 * Input: the glob, then a NUL or a newline, then the string. Short inputs (both at
 * most ORACLE_MAX bytes) are checked against a plain recursive matcher with the meaning
 * pattern.h gives: '*' any run of bytes, '?' one character (a byte and the UTF-8
 * continuation bytes after it), other bytes literal. For a well-formed glob a star
 * taking bytes or whole characters is the same; only a stray continuation byte in the
 * glob tells them apart. Every string matches "*", and a well-formed UTF-8 string
 * matches itself as a glob. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "pattern.h"

#define ORACLE_MAX 12

struct oracle {
	const char *g, *s;
	signed char memo[ORACLE_MAX + 1][ORACLE_MAX + 1]; /* -1 unknown, else the answer */
};

static size_t ref_next(const char *s, size_t i)
{
	i++;
	while (((unsigned char)s[i] & 0xc0) == 0x80)
		i++;
	return i;
}

static bool ref_match(struct oracle *o, size_t gi, size_t si)
{
	if (o->memo[gi][si] >= 0)
		return o->memo[gi][si];
	const char *g = o->g, *s = o->s;
	bool r;
	if (g[gi] == '\0')
		r = s[si] == '\0';
	else if (g[gi] == '*')
		r = ref_match(o, gi + 1, si) || (s[si] != '\0' && ref_match(o, gi, si + 1));
	else if (s[si] == '\0')
		r = false;
	else if (g[gi] == '?')
		r = ref_match(o, gi + 1, ref_next(s, si));
	else
		r = g[gi] == s[si] && ref_match(o, gi + 1, si + 1);
	o->memo[gi][si] = r;
	return r;
}

static bool ref_prefix_passes(const char *prefix, const char *type, const char *subject)
{
	if (*prefix == '\0' || strncmp(type, "s3:", 3) != 0)
		return true;
	return subject != NULL && strncmp(subject, prefix, strlen(prefix)) == 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *in = malloc(size + 1);
	if (in == NULL)
		abort();
	memcpy(in, data, size);
	in[size] = '\0';
	size_t cut = strcspn(in, "\n"); /* stops at the first NUL too */
	char *glob = in, *s = in + size;
	if (cut < size) {
		in[cut] = '\0';
		s = in + cut + 1;
	}

	bool got = pattern_match(glob, s);
	if (strlen(glob) <= ORACLE_MAX && strlen(s) <= ORACLE_MAX) {
		struct oracle o = {glob, s, {{0}}};
		memset(o.memo, -1, sizeof(o.memo));
		bool want = ref_match(&o, 0, 0);
		FUZZ_CHECK(got == want, "pattern_match(\"%s\", \"%s\"): expected %d, got %d", glob,
			   s, want, got);
	}
	FUZZ_CHECK(pattern_match("*", s), "\"*\" does not match \"%s\"", s);
	if (fuzz_utf8_valid(s, strlen(s)))
		FUZZ_CHECK(pattern_match(s, s), "\"%s\" does not match itself", s);
	FUZZ_CHECK(!pattern_match(NULL, s) && !pattern_match(glob, NULL), "NULL matched");

	FUZZ_CHECK(pattern_is_data_event(s) == (strncmp(s, "s3:", 3) == 0),
		   "pattern_is_data_event(\"%s\")", s);
	const char *subjects[] = {s, glob, NULL};
	for (size_t i = 0; i < sizeof(subjects) / sizeof(subjects[0]); i++) {
		bool p = pattern_prefix_passes(glob, s, subjects[i]);
		bool want = ref_prefix_passes(glob, s, subjects[i]);
		FUZZ_CHECK(p == want, "pattern_prefix_passes(\"%s\", \"%s\", %s): expected %d",
			   glob, s, subjects[i] ? subjects[i] : "NULL", want);
	}
	FUZZ_CHECK(pattern_prefix_passes(NULL, s, NULL) && pattern_prefix_passes("", s, NULL),
		   "an empty prefix must pass everything");
	free(in);
	return 0;
}
