/* receiver: a small webhook receiver on libevent's evhttp, for trying
 * s3o-notifyd out. It verifies X-Signature-256 (constant time), prints one
 * line per POST and answers with a fixed status. receiver_new() borrows the
 * event_base (which must outlive it) and copies the options' strings;
 * receiver_free() closes the socket. After options.count POSTs it leaves the
 * loop once the last answer has been sent. */
#ifndef S3O_RECEIVER_H
#define S3O_RECEIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <event2/event.h>

struct receiver;

struct receiver_options {
	const char *name;    /* printed first on each line as [name], or NULL */
	const char *secret;  /* NULL = do not verify signatures */
	int status;	     /* the answer to a POST with a good (or no) signature */
	unsigned long count; /* leave the loop after this many POSTs; 0 = never */
	FILE *out;	     /* one line per POST, flushed */
};

/* Split "HOST:PORT", "[V6]:PORT" or "PORT" (host 127.0.0.1); port 0 = any. */
bool receiver_parse_address(const char *addr, char *host, size_t hostlen, uint16_t *port)
    __attribute__((warn_unused_result));

/* Parse an RFC 3339 time ("2026-11-26T18:37:51.123456Z", or with an offset)
 * into microseconds since the epoch. */
bool receiver_parse_time(const char *s, int64_t *unix_us) __attribute__((warn_unused_result));

/* Bind and listen; NULL with the reason in err. */
struct receiver *receiver_new(struct event_base *base, const char *host, uint16_t port,
			      const struct receiver_options *opts, char *err, size_t n)
    __attribute__((warn_unused_result));
void receiver_free(struct receiver *r);

/* The port actually bound (useful with port 0). */
uint16_t receiver_port(const struct receiver *r);

#endif
