/* pace: when the next claim of new events goes out, decided from what the
 * last one brought back; and whether finished work waits to be settled with
 * more. Pure functions of their arguments, no state, nothing to free.
 *
 * Under load (rows arriving at PACE_MIN_RATE a second or more, as the last
 * claim saw them) claims start PACE_MS apart, so they come in batches
 * instead of a stream of a row or two each, whose fixed cost (a round trip,
 * planning, a commit, then the same for the settlement) producers pay for
 * on a busy database; the busy lock spares them their NOTIFYs meanwhile. A
 * lighter stream is claimed at once on each wake-up, for the lowest
 * latency, and without the lock: rows committed while it is held would wait
 * for the next claim. */
#ifndef S3O_PACE_H
#define S3O_PACE_H

#include <stdbool.h>
#include <stdint.h>

#define PACE_MIN_RATE 500 /* rows a second */
#define PACE_MS	      5
/* While claims are paced, outcomes wait up to PACE_MS for a settlement of
 * this many, instead of one settlement per handful of POSTs that just
 * ended. Not while draining full batches: slots wait on settlements. */
#define PACE_SETTLE_MIN_JOBS 64

struct pace {
	bool loaded;	/* rows came in at PACE_MIN_RATE or more: pass it to the next call */
	bool busy;	/* draining: producers need not notify (take the busy lock) */
	bool claim_now; /* claim again at once, without waiting for a wake-up */
	bool wait;	/* claim again PACE_MS after this claim started */
};

/* After a claim of new events that asked for `asked` rows and got `rows`
 * (at least one), span_us after the claim before it started; was_loaded is
 * the previous call's loaded. A full claim means a backlog: claim on at
 * once. The lock only once two claims in a row saw the load: a pair of rows
 * close together in a light stream is no reason to silence producers. */
struct pace pace_after_claim(unsigned rows, unsigned asked, uint64_t span_us, bool was_loaded);

/* Microseconds the pending outcomes should still wait for more to settle
 * with, 0 to settle now: jobs outcomes pending since since_us (monotonic),
 * now_us the time now, paced whether claims are paced now. */
uint64_t pace_settle_wait_us(bool paced, unsigned jobs, uint64_t since_us, uint64_t now_us);

#endif
