/* fuzz_http_response: the plain-HTTP client's response parser.
 *
 * Input: the bytes a hostile endpoint sends back. The first byte picks how
 * the rest is cut into pieces (the parser sees them as separate reads), so
 * any split is tried. Checked: no crash, leak or overread (ASan); the result
 * does not depend on the split; a complete response has a status from 200 to
 * 599 and took no more bytes than it was given; an error has a reason, and
 * neither leaves the connection reusable. */
#include <string.h>

#include "fuzz.h"
#include "http_response.h"

struct seen {
	enum http_response_state state;
	long status;
	bool keep_alive;
	const char *error;
	size_t used;
	char retry_after[64];
};

static void parse(struct http_response *r, const uint8_t *data, size_t size, size_t piece,
		  struct seen *s)
{
	http_response_reset(r);
	size_t used = 0;
	while (used < size) {
		size_t n = size - used < piece ? size - used : piece;
		size_t got = http_response_feed(r, (const char *)data + used, n);
		FUZZ_CHECK(got <= n, "took %zu of %zu", got, n);
		used += got;
		if (got < n)
			break;
	}
	if (http_response_state(r) == HTTP_RESPONSE_MORE)
		http_response_eof(r);
	s->state = http_response_state(r);
	s->status = http_response_status(r);
	s->keep_alive = http_response_keep_alive(r);
	s->error = http_response_error(r);
	s->used = used;
	const char *ra = http_response_retry_after(r);
	FUZZ_CHECK(!ra || strlen(ra) < sizeof(s->retry_after), "Retry-After of %zu bytes",
		   strlen(ra));
	strcpy(s->retry_after, ra ? ra : "");
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	size_t piece = (size_t)data[0] % 17 + 1;
	data++;
	size--;
	struct http_response *r = http_response_new();
	if (!r)
		abort();
	struct seen whole, split;
	parse(r, data, size, size ? size : 1, &whole);
	parse(r, data, size, piece, &split);
	http_response_free(r);

	FUZZ_CHECK(whole.state == split.state && whole.status == split.status &&
		       whole.keep_alive == split.keep_alive && whole.used == split.used &&
		       strcmp(whole.retry_after, split.retry_after) == 0 &&
		       (whole.error == split.error ||
			(whole.error && split.error && strcmp(whole.error, split.error) == 0)),
		   "whole: state %d status %ld used %zu error %s; in pieces of %zu: state %d "
		   "status %ld used %zu error %s",
		   whole.state, whole.status, whole.used, whole.error ? whole.error : "-", piece,
		   split.state, split.status, split.used, split.error ? split.error : "-");
	FUZZ_CHECK(whole.state != HTTP_RESPONSE_MORE, "still incomplete after the EOF");
	if (whole.state == HTTP_RESPONSE_DONE)
		FUZZ_CHECK(whole.status >= 200 && whole.status <= 599 && !whole.error,
			   "complete with status %ld", whole.status);
	else
		FUZZ_CHECK(whole.error && whole.error[0] && !whole.keep_alive,
			   "an error without a reason, or reusable");
	return 0;
}
