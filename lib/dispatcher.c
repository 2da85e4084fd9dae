/* dispatcher: the daemon's work on one event loop. The scheduler and the
 * lifecycle are here; each concern has its own file (dispatcher_int.h).
 *
 * One event, from commit to settlement:
 *  1. The producer's commit sends a NOTIFY; notify_cb (dispatcher_conn.c)
 *     sets want_new and kicks the scheduler. The sweep timer does the same
 *     every sweep_interval, for missed notifications and due retries.
 *  2. kick_cb (below), once per loop turn however often kicked: settle
 *     what is pending first, then claim what the endpoints have room for,
 *     alternating new events and due retries.
 *  3. claim_new (dispatcher_claim.c) leases a batch of rows on the work
 *     connection; claim_new_cb decides whether to claim again at once, a
 *     little later (pacing under load) or not until the next wake-up.
 *  4. job_from_row (dispatcher_post.c) builds the envelope once and a
 *     delivery per matching endpoint; each waits in its endpoint's queue,
 *     or goes back to the database when the endpoint holds all it may.
 *  5. endpoint_pump starts POSTs while the endpoint has free slots;
 *     post_done_cb records 2xx, a retry with its backoff, or a drop.
 *  6. When every delivery of the job has an outcome, job_finish
 *     (dispatcher_settle.c) adds it to the pending batch; settle_flush sends
 *     the batch on the settle connection: delete, hand back, or write one
 *     retry row per endpoint still owed the event. A settled retry arms the
 *     retry timer, which claims it again when due.
 * Meanwhile renew_cb (dispatcher_lease.c) keeps the leases of everything
 * still held from expiring, and stats_cb (dispatcher_metrics.c) refreshes
 * the database-wide gauges. */
#include "dispatcher_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* Run the scheduler once on the next loop turn, however often it is asked:
 * completions of one turn then settle in one batch. */
void dispatcher_kick(struct dispatcher *d)
{
	event_active(d->kick_ev, EV_TIMEOUT, 0);
}

void dispatcher_check_drained(struct dispatcher *d)
{
	if (d->stopping && !d->drained && d->njobs == 0 && !d->claiming && !d->inflight &&
	    store_batch_empty(d->pending)) {
		d->drained = true;
		log_info("shutdown complete: every claim settled or handed back");
		event_base_loopexit(d->base, NULL);
	}
}

/* The scheduler: settle first, then claim what the endpoints have room for. */
static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct dispatcher *d = arg;
	settle_flush(d);
	if (!pgconn_is_up(d->work)) {
		dispatcher_check_drained(d);
		return;
	}
	if (d->stopping || d->claiming || !d->schema_ok) {
		dispatcher_check_drained(d);
		return;
	}
	bool retry_first = d->prefer_retry && retry_wanted(d);
	if (!retry_first && d->want_new && claim_new(d)) {
		d->prefer_retry = true;
		return;
	}
	if (retry_wanted(d) && claim_retries(d)) {
		d->prefer_retry = false;
		return;
	}
	if (d->want_new && claim_new(d))
		d->prefer_retry = true;
}

static void cleanup_cb(const struct store_result *r, void *arg)
{
	(void)arg;
	if (r->status == STORE_ERROR)
		log_warn("sweep cleanup failed: %s", r->error);
}

static void sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct dispatcher *d = arg;
	d->want_new = d->want_retry = true;
	d->claim_after = 0;
	d->wakeups[WAKE_SWEEP]++;
	if (pgconn_is_up(d->work) && d->schema_ok) {
		if (store_cleanup(d->work, cleanup_cb, d) != 0 ||
		    store_next_due(d->work, d->ep_names, d->neps, next_due_cb, d) != 0)
			log_debug("sweep queries not sent: connection down");
	}
	dispatcher_kick(d);
}

/* Shutdown timeout: abandon the POSTs still running and hand them back;
 * then, after a last wait for the settlement, leave regardless. */
static void shutdown_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct dispatcher *d = arg;
	if (d->abandoned) {
		log_warn("shutdown: could not settle every claim; their leases expire in %" PRIu64
			 " ms",
			 d->cfg->lease_ms);
		event_base_loopexit(d->base, NULL);
		return;
	}
	d->abandoned = true;
	unsigned n = 0;
	http_free(d->http);
	d->http = NULL;
	struct job *j = d->jobs;
	while (j) {
		struct job *next = j->next;
		for (unsigned i = 0; i < j->ndel; i++) {
			struct delivery *dl = &j->del[i];
			if (dl->state != DEL_RUNNING)
				continue;
			dl->state = DEL_HANDBACK;
			dl->ep->in_flight--;
			j->pending--;
			n++;
		}
		if (j->pending == 0)
			job_finish(d, j);
		j = next;
	}
	log_warn("shutdown timeout: %u POSTs abandoned and handed back", n);
	timer_ms(d->shutdown_timer, DISPATCHER_SETTLE_WAIT_MS);
	dispatcher_kick(d);
	dispatcher_check_drained(d);
}

struct dispatcher *dispatcher_new(struct event_base *base, const struct config *cfg)
{
	struct dispatcher *d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->base = base;
	d->cfg = cfg;
	d->rng = (uint32_t)time(NULL) ^ ((uint32_t)getpid() << 16) ^ 0x9e3779b9u;
	if (!d->rng)
		d->rng = 1;
	d->neps = cfg->nendpoints;
	d->eps = calloc(d->neps ? d->neps : 1, sizeof(*d->eps));
	d->ep_names = calloc(d->neps ? d->neps : 1, sizeof(*d->ep_names));
	d->pending = store_batch_new();
	d->pending_slots = calloc(d->neps ? d->neps : 1, sizeof(unsigned));
	d->inflight_slots = calloc(d->neps ? d->neps : 1, sizeof(unsigned));
	if (!d->eps || !d->ep_names || !d->pending || !d->pending_slots || !d->inflight_slots)
		goto fail;
	for (size_t i = 0; i < d->neps; i++) {
		if (endpoint_init(d, &d->eps[i], &cfg->endpoints[i]) != 0)
			goto fail;
		d->ep_names[i] = d->eps[i].cfg->name;
	}
	const char *listen_url = cfg->listen_url[0] ? cfg->listen_url : cfg->database_url;
	struct pgconn_callbacks wcb = {.up = work_up_cb, .down = work_down_cb};
	struct pgconn_callbacks scb = {.up = settle_up_cb};
	struct pgconn_callbacks lcb = {
	    .up = listen_up_cb, .down = listen_down_cb, .notify = notify_cb};
	uint64_t qt = cfg->lease_ms;
	d->work = pgconn_new(base, cfg->database_url, "work", qt, &wcb, d);
	d->settle = pgconn_new(base, cfg->database_url, "settle", qt, &scb, d);
	d->listen = pgconn_new(base, listen_url, "listen", qt, &lcb, d);
	d->pooled = strcmp(listen_url, cfg->database_url) != 0;
	d->http = http_new(base, cfg->max_in_flight);
	d->sweep_timer = event_new(base, -1, EV_PERSIST, sweep_cb, d);
	d->retry_timer = evtimer_new(base, retry_timer_cb, d);
	d->shutdown_timer = evtimer_new(base, shutdown_timer_cb, d);
	d->kick_ev = event_new(base, -1, 0, kick_cb, d);
	d->stats_timer = event_new(base, -1, EV_PERSIST, stats_cb, d);
	d->claim_timer = evtimer_new(base, claim_timer_cb, d);
	d->renew_timer = event_new(base, -1, EV_PERSIST, renew_cb, d);
	d->settle_timer = evtimer_new(base, settle_timer_cb, d);
	if (!d->work || !d->settle || !d->listen || !d->http || !d->sweep_timer ||
	    !d->retry_timer || !d->shutdown_timer || !d->kick_ev || !d->stats_timer ||
	    !d->claim_timer || !d->renew_timer || !d->settle_timer)
		goto fail;
	if (dispatcher_histograms_init(d) != 0)
		goto fail;
	if (d->pooled) {
		pgconn_unnamed_only(d->work);
		pgconn_unnamed_only(d->settle);
		log_info("listen_url is set, so url is taken for a transaction pooler: no session "
			 "settings and no prepared statements on it");
	}
	for (size_t i = 0; i < d->neps; i++) /* the name only: a URL may hold a password */
		log_info("endpoint %s: POSTs through %s", d->eps[i].cfg->name,
			 http_target_builtin(d->eps[i].target)
			     ? "the built-in HTTP/1.1 client"
			     : "libcurl (https, a host name, a user in the URL, or a proxy)");
	return d;
fail:
	dispatcher_free(d);
	return NULL;
}

void dispatcher_free(struct dispatcher *d)
{
	if (!d)
		return;
	/* HTTP first: its transfers point into the jobs. */
	http_free(d->http);
	while (d->jobs) {
		struct job *j = d->jobs;
		job_unlink(d, j);
		job_free(j);
	}
	job_free_list(d->settling);
	job_free_list(d->settling_sent);
	struct event *evs[] = {d->sweep_timer, d->retry_timer, d->shutdown_timer, d->kick_ev,
			       d->stats_timer, d->claim_timer, d->renew_timer,	  d->settle_timer};
	for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++)
		if (evs[i])
			event_free(evs[i]);
	pgconn_free(d->work);
	pgconn_free(d->settle);
	pgconn_free(d->listen);
	for (size_t i = 0; d->eps && i < d->neps; i++)
		endpoint_release(&d->eps[i]);
	free(d->eps);
	free(d->ep_names);
	store_batch_free(d->pending);
	store_batch_free(d->inflight);
	store_batch_free(d->renewal);
	free(d->pending_slots);
	free(d->inflight_slots);
	free(d);
}

void dispatcher_start(struct dispatcher *d)
{
	struct timeval tv = clock_tv_ms(d->cfg->sweep_interval_ms);
	event_add(d->sweep_timer, &tv);
	timer_ms(d->stats_timer, DISPATCHER_STATS_MS);
	timer_ms(d->renew_timer, d->cfg->lease_ms / 4 ? d->cfg->lease_ms / 4 : 1);
	pgconn_start(d->work);
	pgconn_start(d->settle);
	pgconn_start(d->listen);
}

void dispatcher_shutdown(struct dispatcher *d)
{
	if (d->stopping) {
		log_warn("second signal: exiting now; unsettled claims wait for their leases");
		event_base_loopbreak(d->base);
		return;
	}
	d->stopping = true;
	mark_idle(d);
	event_del(d->sweep_timer);
	event_del(d->stats_timer);
	event_del(d->claim_timer);
	event_del(d->retry_timer);
	unsigned running = 0;
	for (size_t i = 0; i < d->neps; i++) {
		struct endpoint *ep = &d->eps[i];
		running += ep->in_flight;
		while (ep->q_head) {
			struct delivery *dl = ep->q_head;
			ep->q_head = dl->next;
			ep->queued--;
			dl->state = DEL_HANDBACK;
			delivery_done(d, dl);
		}
		ep->q_tail = NULL;
	}
	log_info("shutting down: waiting up to %" PRIu64 " ms for %u POSTs in flight",
		 d->cfg->shutdown_timeout_ms, running);
	timer_ms(d->shutdown_timer, d->cfg->shutdown_timeout_ms);
	dispatcher_kick(d);
	dispatcher_check_drained(d);
}

int dispatcher_exit_code(const struct dispatcher *d)
{
	return d->exit_code;
}

bool dispatcher_ready(const struct dispatcher *d, const char **why)
{
	const char *w = NULL;
	if (!pgconn_is_up(d->work))
		w = "database connection down";
	else if (!pgconn_is_up(d->settle))
		w = "settlement connection down";
	else if (!pgconn_is_up(d->listen))
		w = "listen connection down";
	else if (!d->listening)
		w = "LISTEN not active";
	else if (!d->schema_ok)
		w = "schema not verified";
	if (why)
		*why = w;
	return w == NULL;
}
