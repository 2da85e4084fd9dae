/* dispatcher_settle: a finished job's outcomes go into the pending batch,
 * which is settled in one round trip on its own connection; the retries
 * it schedules arm the retry timer. */
#include "dispatcher_int.h"

#include <stdlib.h>

#include "log.h"

/* Every delivery of the job has an outcome: record it for the next settlement. */
void job_finish(struct dispatcher *d, struct job *j)
{
	struct store_batch *b = d->pending;
	if (d->pending_jobs++ == 0)
		d->pending_since_us = clock_mono_us();
	for (unsigned i = 0; i < j->ndel; i++) {
		if (j->del[i].holds_slot) {
			j->del[i].ep->unsettled++;
			d->pending_slots[j->del[i].ep - d->eps]++;
		}
	}
	if (j->retry) {
		struct delivery *dl = &j->del[0];
		const char *ep = dl->ep->cfg->name;
		if (dl->state == DEL_OK || dl->state == DEL_DROPPED)
			store_batch_retry_done(b, j->id, ep, j->token);
		else if (dl->state == DEL_FAILED)
			store_batch_retry_again(b, j->id, ep, j->token, dl->attempts, dl->delay_ms,
						dl->error);
		else
			store_batch_retry_again(b, j->id, ep, j->token, dl->attempts, 0, NULL);
	} else {
		unsigned done = 0, handback = 0;
		for (unsigned i = 0; i < j->ndel; i++) {
			enum delivery_state s = j->del[i].state;
			done += s == DEL_OK || s == DEL_DROPPED;
			handback += s == DEL_HANDBACK;
		}
		if (done == j->ndel) {
			store_batch_new_done(b, j->id, j->token);
		} else if (handback == j->ndel) {
			store_batch_new_release(b, j->id, j->token);
		} else {
			store_batch_new_fanout(b, j->id, j->token);
			for (unsigned i = 0; i < j->ndel; i++) {
				struct delivery *dl = &j->del[i];
				if (dl->state == DEL_FAILED || dl->state == DEL_HANDBACK)
					store_batch_fanout_row(
					    b, j->id, dl->ep->cfg->name, dl->attempts,
					    dl->state == DEL_FAILED ? dl->delay_ms : 0, dl->error);
			}
		}
	}
	job_unlink(d, j);
	/* Kept, for the renewal of its lease, until its settlement commits. */
	free(j->body);
	j->body = NULL;
	j->prev = NULL;
	j->next = d->settling;
	d->settling = j;
	dispatcher_kick(d);
}

static void arm_retry(struct dispatcher *d, uint64_t delay_ms)
{
	uint64_t at = clock_mono_ms() + delay_ms;
	if (d->retry_deadline && d->retry_deadline <= at && evtimer_pending(d->retry_timer, NULL))
		return;
	d->retry_deadline = at;
	timer_ms(d->retry_timer, delay_ms);
}

static void settle_cb(bool ok, void *arg)
{
	struct dispatcher *d = arg;
	if (ok) {
		pgconn_reset_backoff(d->settle);
		uint64_t delay = store_batch_min_delay(d->inflight);
		if (delay != UINT64_MAX && !d->stopping)
			arm_retry(d, delay + DISPATCHER_RETRY_SLACK_MS);
		store_batch_free(d->inflight);
		d->inflight = NULL;
		job_free_list(d->settling_sent);
		d->settling_sent = NULL;
		for (size_t i = 0; i < d->neps; i++) {
			d->eps[i].unsettled -= d->inflight_slots[i];
			d->inflight_slots[i] = 0;
			endpoint_pump(&d->eps[i]);
		}
	} else {
		/* Sent again once the connection is back: every statement is idempotent. */
		d->inflight_sent = false;
		/* An SQL error: back off before trying again. */
		if (pgconn_is_up(d->settle))
			pgconn_reconnect(d->settle);
	}
	dispatcher_kick(d);
	dispatcher_check_drained(d);
}

void settle_flush(struct dispatcher *d)
{
	/* Down: settle_up_cb kicks again once it is back. */
	if ((d->inflight && d->inflight_sent) || !pgconn_is_up(d->settle))
		return;
	if (!d->inflight) {
		if (store_batch_empty(d->pending))
			return;
		uint64_t wait = pace_settle_wait_us(d->pacing && !d->stopping, d->pending_jobs,
						    d->pending_since_us, clock_mono_us());
		if (wait) {
			struct timeval tv = {.tv_usec = (suseconds_t)wait};
			evtimer_add(d->settle_timer, &tv);
			return;
		}
		struct store_batch *fresh = store_batch_new();
		if (!fresh)
			return;
		d->inflight = d->pending;
		d->pending = fresh;
		unsigned *slots = d->inflight_slots;
		d->inflight_slots = d->pending_slots;
		d->pending_slots = slots;	/* all zero: released by the last settle_cb */
		d->settling_sent = d->settling; /* NULL: freed by the last settle_cb */
		d->settling = NULL;
		log_debug("settling %u events", d->pending_jobs);
		d->pending_jobs = 0;
	}
	if (store_settle(d->settle, d->inflight, settle_cb, d) == 0)
		d->inflight_sent = true;
}

void next_due_cb(const struct store_result *r, bool pending, uint64_t ms, void *arg)
{
	struct dispatcher *d = arg;
	if (r->status != STORE_OK || !pending || d->stopping)
		return;
	arm_retry(d, ms + DISPATCHER_RETRY_SLACK_MS);
}

void settle_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	dispatcher_kick(arg);
}

void retry_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct dispatcher *d = arg;
	d->retry_deadline = 0;
	d->want_retry = true;
	d->wakeups[WAKE_RETRY]++;
	dispatcher_kick(d);
}
