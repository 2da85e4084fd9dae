/* dispatcher_claim: claims of new events and of due retries, sized by the
 * endpoints' room, paced under load, and the busy lock that spares
 * producers their NOTIFYs while a claim drains. */
#include "dispatcher_int.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

static void busy_release_cb(const struct store_result *r, bool held, void *arg)
{
	(void)held;
	(void)arg;
	if (r->status == STORE_ERROR)
		log_warn("cannot release the busy lock: %s", r->error);
}

static void busy_release(struct dispatcher *d)
{
	d->busy_lock = LOCK_NONE;
	if (store_busy_lock(d->listen, false, busy_release_cb, d) != 0)
		log_debug("busy lock not released: connection down, which released it");
}

static void busy_take_cb(const struct store_result *r, bool taken, void *arg)
{
	struct dispatcher *d = arg;
	if (d->busy_lock != LOCK_TAKING)
		return; /* the connection went down meanwhile, and the lock with it */
	d->busy_lock = LOCK_NONE;
	if (r->status == STORE_LOST)
		return;
	if (r->status == STORE_ERROR) {
		log_warn("cannot take the busy lock: %s", r->error);
		return;
	}
	/* Not taken: another dispatcher holds it (it is draining too), or a
	 * producer's trigger was testing it just then: try again later. */
	if (!taken) {
		d->busy_try_at = clock_mono_ms() + DISPATCHER_BUSY_TRY_MS;
		return;
	}
	d->busy_lock = LOCK_HELD;
	if (!d->busy) /* drained while we were asking */
		busy_release(d);
}

/* Draining: tell producers no wake-up is needed (docs/design.md). Taken again
 * at once after our own release: until it is, every producer notifies. */
void mark_busy(struct dispatcher *d)
{
	d->busy = true;
	if (d->busy_lock != LOCK_NONE || !d->listening || clock_mono_ms() < d->busy_try_at)
		return;
	if (store_busy_lock(d->listen, true, busy_take_cb, d) == 0)
		d->busy_lock = LOCK_TAKING;
}

void mark_idle(struct dispatcher *d)
{
	d->busy = false;
	if (d->busy_lock == LOCK_HELD)
		busy_release(d);
}

static void claim_new_cb(const struct store_result *r, const struct store_row *rows, size_t nrows,
			 void *arg)
{
	struct dispatcher *d = arg;
	d->claiming = false;
	if (r->status == STORE_LOST) {
		dispatcher_kick(d);
		return;
	}
	if (r->status == STORE_ERROR) {
		log_error("claim of new events failed: %s", r->error);
		d->want_new = false; /* the sweep tries again */
		dispatcher_check_drained(d);
		return;
	}
	unsigned n = (unsigned)nrows;
	/* A full batch: the next claim starts after it. Anything else: from
	 * the start again, where rows may have become free (released leases,
	 * late commits of ids below the last one claimed). */
	bool from_start = d->claim_after == 0;
	d->claim_after = 0;
	if (n > 0 && n >= d->claim_want)
		for (unsigned i = 0; i < n; i++)
			if (rows[i].id > d->claim_after)
				d->claim_after = rows[i].id;
	if (n > 0 && !d->stopping) {
		/* Rows keep coming: claim again without waiting for a wake-up,
		 * at once or, under load, after a pause that lets them gather
		 * (producers' wake-ups still cut it short). */
		struct pace p = pace_after_claim(
		    n, d->claim_want, d->claim_start_us - d->prev_claim_start_us, d->loaded);
		d->loaded = p.loaded;
		if (p.busy)
			mark_busy(d);
		d->want_new = p.claim_now;
		d->pacing = p.wait;
		if (d->pacing) {
			uint64_t next = d->claim_start_us + PACE_MS * 1000;
			uint64_t now = clock_mono_us();
			struct timeval tv = {.tv_usec = (suseconds_t)(next > now ? next - now : 0)};
			evtimer_add(d->claim_timer, &tv);
		}
	} else if (!from_start && !d->stopping) {
		d->loaded = d->pacing = false;
		d->want_new = true; /* once more, from the start */
	} else {
		/* A notification that came while this claim ran may be for a row
		 * its snapshot could not see: claim again for it. */
		d->want_new = d->notifies != d->claim_notifies;
		d->loaded = d->pacing = false;
		if (d->busy) {
			/* Drained: producers notify again from now on. One more
			 * claim a little later takes what they inserted under the
			 * mark and committed since. */
			mark_idle(d);
			timer_ms(d->claim_timer, DISPATCHER_LAST_CLAIM_MS);
		}
	}
	if (n > 0) {
		d->share_rows = n;
		for (size_t i = 0; i < d->neps; i++)
			d->eps[i].share = 0;
	}
	for (unsigned i = 0; i < n; i++)
		job_from_row(d, &rows[i], NULL);
	for (size_t i = 0; i < d->neps; i++)
		endpoint_pump(&d->eps[i]);
	log_debug("claimed %u new events", n);
	dispatcher_kick(d);
}

static struct endpoint *endpoint_by_name(struct dispatcher *d, const char *name)
{
	for (size_t i = 0; i < d->neps; i++)
		if (strcmp(d->eps[i].cfg->name, name) == 0)
			return &d->eps[i];
	return NULL;
}

static void claim_retries_cb(const struct store_result *r, const struct store_row *rows, size_t n,
			     void *arg)
{
	struct dispatcher *d = arg;
	d->claiming = false;
	if (r->status != STORE_OK) {
		if (r->status == STORE_ERROR)
			log_error("claim of retries failed: %s", r->error);
		dispatcher_kick(d);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		struct endpoint *ep = endpoint_by_name(d, rows[i].endpoint);
		if (!ep)
			continue; /* cannot happen: we asked for these names; the lease expires */
		ep->retry_got++;
		job_from_row(d, &rows[i], ep);
	}
	bool more = false;
	for (size_t i = 0; i < d->neps; i++) {
		struct endpoint *ep = &d->eps[i];
		if (ep->retry_req > 0) /* a full answer means more may be due */
			ep->backlog = ep->retry_got >= ep->retry_req;
		more |= ep->backlog;
		ep->retry_req = ep->retry_got = 0;
		endpoint_pump(ep);
	}
	log_debug("claimed %zu due retries", n);
	/* Nothing more is due now: time the next retry that will be. */
	if (!more && !d->stopping &&
	    store_next_due(d->work, d->ep_names, d->neps, next_due_cb, d) != 0)
		log_debug("next retry not looked up: connection down");
	dispatcher_kick(d);
}

/* New events a claim may take, with the endpoints' room now (or, with
 * `empty`, when they hold nothing): the largest room, or more where the
 * last claim's rows went to several endpoints, as many as leave each of
 * those within its room at the share of the rows it got (4 endpoints that
 * split the events between them take 4 times the room of one, a claim as
 * large as one endpoint's alone). An endpoint that is full (a slow one)
 * never makes it smaller than the largest room: its deliveries are handed
 * back, the others go on. At most batch_size. */
static unsigned claim_rows(const struct dispatcher *d, bool empty)
{
	uint64_t largest = 0, fit = UINT64_MAX;
	for (size_t i = 0; i < d->neps; i++) {
		const struct endpoint *ep = &d->eps[i];
		uint64_t room = empty ? 2 * ep->cap : endpoint_room(ep);
		if (room > largest)
			largest = room;
		if (ep->share && room * d->share_rows / ep->share < fit)
			fit = room * d->share_rows / ep->share;
	}
	uint64_t rows = fit != UINT64_MAX && fit > largest ? fit : largest;
	return rows < d->cfg->batch_size ? (unsigned)rows : d->cfg->batch_size;
}

bool claim_new(struct dispatcher *d)
{
	unsigned want = claim_rows(d, false);
	/* Claim in useful batches unless idle, when latency matters most. */
	unsigned full = claim_rows(d, true);
	if (want == 0 || (d->njobs > 0 && want * 2 < full))
		return false;
	if (store_claim_new(d->work, want, d->claim_after, d->cfg->lease_ms, claim_new_cb, d) != 0)
		return false;
	d->claiming = true;
	d->claim_sent_ms = clock_mono_ms();
	d->claim_notifies = d->notifies;
	d->claim_want = want;
	d->prev_claim_start_us = d->claim_start_us;
	d->claim_start_us = clock_mono_us();
	return true;
}

bool claim_retries(struct dispatcher *d)
{
	const char *names[d->neps ? d->neps : 1];
	unsigned limits[d->neps ? d->neps : 1];
	size_t n = 0;
	for (size_t i = 0; i < d->neps; i++) {
		struct endpoint *ep = &d->eps[i];
		unsigned room = endpoint_room(ep);
		if (!(d->want_retry || ep->backlog))
			continue;
		if (room == 0) {
			ep->backlog = true; /* claimed once it has room */
			continue;
		}
		ep->retry_req = room < d->cfg->batch_size ? room : d->cfg->batch_size;
		names[n] = ep->cfg->name;
		limits[n++] = ep->retry_req;
	}
	d->want_retry = false;
	if (n == 0)
		return false;
	if (store_claim_retries(d->work, names, limits, n, d->cfg->lease_ms, claim_retries_cb, d) !=
	    0) {
		for (size_t i = 0; i < d->neps; i++)
			d->eps[i].retry_req = 0;
		return false;
	}
	d->claiming = true;
	d->claim_sent_ms = clock_mono_ms();
	return true;
}

bool retry_wanted(const struct dispatcher *d)
{
	if (d->want_retry)
		return true;
	for (size_t i = 0; i < d->neps; i++)
		if (d->eps[i].backlog && endpoint_room(&d->eps[i]) > 0)
			return true;
	return false;
}

/* A claim later: paced under load, or the last one after draining. */
void claim_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct dispatcher *d = arg;
	d->want_new = true;
	dispatcher_kick(d);
}
