#include "pattern.h"

#include <stddef.h>
#include <string.h>

/* A UTF-8 continuation byte (10xxxxxx). */
static bool is_cont(unsigned char c)
{
	return (c & 0xC0) == 0x80;
}

/* Step over one character: one byte plus any continuation bytes, so that '?'
 * never splits a multi-byte UTF-8 sequence. */
static const char *next_char(const char *s)
{
	s++;
	while (is_cont((unsigned char)*s))
		s++;
	return s;
}

/* Iterative two-pointer glob match: on a mismatch, resume after the last '*'
 * with the string one byte further on. Each '*' only ever moves forward, so the
 * worst case is O(len(glob) * len(s)), never exponential.
 *
 * Forgetting the earlier stars is only right when a star can end at any byte:
 * stepping it by whole characters made "*a*\xa9" miss "aa\xa9" (the second star,
 * at the stray continuation byte, could not stop there). For a well-formed glob
 * the two are the same, since what follows a star (a literal that is not a
 * continuation byte, a '?' taking the rest of a character, or the end) never
 * matches from inside a character differently from its start. */
bool pattern_match(const char *glob, const char *s)
{
	if (glob == NULL || s == NULL)
		return false;

	const char *star = NULL;   /* glob position just after the last '*' seen */
	const char *resume = NULL; /* string position that '*' is tried up to */

	while (*s != '\0') {
		if (*glob == '*') {
			while (*glob == '*')
				glob++;
			if (*glob == '\0')
				return true; /* a trailing star swallows the rest */
			star = glob;
			resume = s;
		} else if (*glob == '?') {
			glob++;
			s = next_char(s);
		} else if (*glob == *s) {
			glob++;
			s++;
		} else if (star != NULL) {
			resume++;
			glob = star;
			s = resume;
		} else {
			return false;
		}
	}
	while (*glob == '*')
		glob++;
	return *glob == '\0';
}

bool pattern_is_data_event(const char *event_type)
{
	return event_type != NULL && strncmp(event_type, "s3:", 3) == 0;
}

bool pattern_prefix_passes(const char *prefix, const char *event_type, const char *subject)
{
	if (prefix == NULL || *prefix == '\0')
		return true;
	if (!pattern_is_data_event(event_type))
		return true;
	if (subject == NULL)
		return false;
	return strncmp(subject, prefix, strlen(prefix)) == 0;
}
