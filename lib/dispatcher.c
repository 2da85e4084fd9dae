#include "dispatcher.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backoff.h"
#include "event.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "pattern.h"
#include "pgconn.h"
#include "sign.h"
#include "store.h"

#define DISPATCHER_CHANNEL	  "notification_outbox"
#define DISPATCHER_SETTLE_WAIT_MS 5000 /* at shutdown, after the deliveries */
#define DISPATCHER_RETRY_SLACK_MS 10   /* so a retry is due in the database when we claim it */
#define DISPATCHER_STATS_MS	  1000 /* refresh of the database-wide gauges */
#define DISPATCHER_BUSY_TRY_MS	  20   /* after a failed attempt at the busy lock (sql/004) */
#define DISPATCHER_LAST_CLAIM_MS  100  /* after releasing it: covers producers' commit delay */
/* Under load (rows arriving at PACE_MIN_RATE a second or more, as the last
 * claim saw them) claims start PACE_MS apart, so they come in batches
 * instead of a stream of a row or two each, whose fixed cost (a round trip,
 * planning, a commit, then the same for the settlement) producers pay for
 * on a busy database; the busy lock spares them their NOTIFYs meanwhile. A
 * lighter stream is claimed at once on each wake-up, for the lowest
 * latency, and without the lock: rows committed while it is held would
 * wait for the next claim. */
#define DISPATCHER_PACE_MIN_RATE 500
#define DISPATCHER_PACE_MS	 5
/* While claims are paced, outcomes wait up to PACE_MS for a settlement of
 * this many, instead of one settlement per handful of POSTs that just
 * ended. Not while draining full batches: slots wait on settlements. */
#define DISPATCHER_SETTLE_MIN_JOBS 64

enum wakeup { WAKE_NOTIFY, WAKE_SWEEP, WAKE_RECONNECT, WAKE_RETRY, WAKE_COUNT };
static const char *const wakeup_names[WAKE_COUNT] = {"notify", "sweep", "reconnect", "retry"};

static const double duration_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
					 0.5,	1,    2.5,   5,	   10,	30};
static const double lag_bounds[] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,   2.5,
				    5,	  10,	 30,   60,  300,  900, 3600};

enum delivery_state {
	DEL_QUEUED,   /* waiting for one of its endpoint's slots */
	DEL_RUNNING,  /* POST in flight */
	DEL_OK,	      /* 2xx */
	DEL_FAILED,   /* to retry after delay_ms */
	DEL_DROPPED,  /* retries exhausted */
	DEL_HANDBACK, /* not attempted now: queued in the database, due at once */
};

struct delivery {
	struct delivery *next; /* in its endpoint's queue */
	struct job *job;
	struct endpoint *ep;
	enum delivery_state state;
	int attempts;	 /* attempts made, this one included once it ran */
	bool holds_slot; /* POSTed: counts as unsettled from its job's end to settlement */
	uint64_t delay_ms;
	char *error;
};

/* One claimed row in memory: a new event with a delivery per matching
 * endpoint, or one due retry with a single delivery. */
struct job {
	struct job *prev, *next;
	int64_t id;
	char token[40];
	bool retry;
	int64_t created_us; /* commit-to-delivery lag starts here */
	uint64_t leased_ms; /* monotonic time its lease was last set */
	bool renewing;	    /* in the lease renewal being sent */
	bool lost;	    /* a renewal found its row claimed by someone else */
	char *event_id;
	char *type;
	char *body;
	size_t len;
	unsigned ndel, pending;
	struct delivery del[];
};

struct endpoint {
	struct dispatcher *d;
	const struct endpoint_config *cfg;
	struct curl_slist *headers;
	struct signer *signer; /* NULL when the endpoint has no secret */
	unsigned cap;	       /* POSTs at once: its share of max_in_flight */
	/* POSTs running, outcomes waiting for their settlement (once their job
	 * is finished) and queued deliveries: together at most 2 * cap, which
	 * also bounds what a crash repeats of single-endpoint events. A POST's
	 * slot is free as soon as it ends: waiting for the settlement's commit
	 * as well left slots idle for 2-4 ms a round (bench/README.md). */
	unsigned in_flight, unsettled, queued;
	struct delivery *q_head, *q_tail;
	bool backlog;		       /* due rows of its own may be waiting in the database */
	unsigned retry_req, retry_got; /* rows asked for and received in a retry claim */
	unsigned share;		       /* its deliveries from the last claim of new events */
	uint64_t delivered, failed, dropped;
	struct histogram duration;
};

struct dispatcher {
	struct event_base *base;
	const struct config *cfg;
	struct endpoint *eps;
	size_t neps;
	const char **ep_names;
	/* Claims and the rest on work; settlements on their own connection, so
	 * a delivered job's slot does not wait behind a claim (and the two run
	 * on two backends at once); LISTEN and the busy lock on listen. */
	struct pgconn *work, *settle, *listen;
	/* listen_url is set apart from url, which is then taken for a
	 * transaction pooler: no session state (settings, prepared statements)
	 * on work and settle, which would stay on a server session that other
	 * clients' transactions use next. */
	bool pooled;
	struct http *http;
	struct event *sweep_timer, *retry_timer, *shutdown_timer, *kick_ev, *claim_timer;
	struct event *renew_timer, *settle_timer;
	struct store_batch *renewal; /* the lease renewal being sent, if any */
	uint64_t renewal_sent_ms;
	uint64_t retry_deadline; /* monotonic ms of the armed retry timer, 0 = none */

	bool schema_ok, started, listening;
	bool want_new, want_retry, claiming, prefer_retry;
	/* Claims of new events start after this id while they come back full
	 * (0: from the start); claim_want is what the running claim asked for. */
	int64_t claim_after;
	unsigned claim_want;
	/* Rows of the last claim of new events that had any (endpoint share). */
	unsigned share_rows;
	bool busy;   /* draining: claims come back full, or rows come in under load */
	bool loaded; /* the last claim saw rows come in at PACE_MIN_RATE or more */
	bool pacing; /* and was not full: the next one waits (settlements too) */
	/* The busy lock (sql/004), held on the listen connection while busy:
	 * producers then skip pg_notify(). */
	enum { LOCK_NONE, LOCK_TAKING, LOCK_HELD } busy_lock;
	uint64_t busy_try_at; /* no attempt at the lock before (monotonic ms), after a failed one */
	uint64_t notifies, claim_notifies; /* NOTIFYs received; as of the running claim */
	uint64_t claim_start_us, prev_claim_start_us; /* monotonic; of the last two claims */
	bool stopping, abandoned, drained;
	int exit_code;

	struct job *jobs;
	unsigned njobs;
	struct store_batch *pending, *inflight;
	unsigned *pending_slots, *inflight_slots; /* per endpoint, freed when settled */
	unsigned pending_jobs;			  /* outcomes in pending */
	uint64_t pending_since_us;		  /* monotonic time of the first of them */
	bool inflight_sent;

	uint64_t unmatched;
	uint32_t rng;

	/* metrics */
	struct event *stats_timer;
	struct histogram lag;
	uint64_t wakeups[WAKE_COUNT];
	bool stats_running, stats_valid;
	double depth, oldest_age, queue_usage;
};

static void job_finish(struct dispatcher *d, struct job *j);
static void next_due_cb(PGresult *res, void *arg);

static uint64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static uint64_t now_ms(void)
{
	return mono_us() / 1000;
}

static int64_t realtime_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static uint32_t rng_next(struct dispatcher *d)
{
	/* xorshift32: jitter only, no secrecy needed */
	uint32_t x = d->rng;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return d->rng = x;
}

static void timer_ms(struct event *ev, uint64_t ms)
{
	struct timeval tv = {.tv_sec = (time_t)(ms / 1000),
			     .tv_usec = (suseconds_t)(ms % 1000) * 1000};
	evtimer_add(ev, &tv);
}

/* Run the scheduler once on the next loop turn, however often it is asked:
 * completions of one turn then settle in one batch. */
static void schedule_kick(struct dispatcher *d)
{
	event_active(d->kick_ev, EV_TIMEOUT, 0);
}

static void check_drained(struct dispatcher *d)
{
	if (d->stopping && !d->drained && d->njobs == 0 && !d->claiming && !d->inflight &&
	    store_batch_empty(d->pending)) {
		d->drained = true;
		log_info("shutdown complete: every claim settled or handed back");
		event_base_loopexit(d->base, NULL);
	}
}

/* ---- deliveries ---- */

static void delivery_done(struct dispatcher *d, struct delivery *dl)
{
	struct job *j = dl->job;
	if (--j->pending == 0)
		job_finish(d, j);
}

static void audit_drop(struct delivery *dl)
{
	char attempts[16];
	snprintf(attempts, sizeof(attempts), "%d", dl->attempts);
	struct log_field f[] = {
	    {"audit", "true", true},	    {"event_id", dl->job->event_id, false},
	    {"type", dl->job->type, false}, {"endpoint", dl->ep->cfg->name, false},
	    {"attempts", attempts, true},   {"last_error", dl->error ? dl->error : "", false},
	};
	log_fields(LOGL_WARN, f, sizeof(f) / sizeof(f[0]), "delivery dropped after %d attempts",
		   dl->attempts);
}

static void pump(struct endpoint *ep);

static void post_done_cb(const struct http_result *r, void *arg)
{
	struct delivery *dl = arg;
	struct endpoint *ep = dl->ep;
	struct dispatcher *d = ep->d;
	const struct endpoint_config *cfg = ep->cfg;

	ep->in_flight--;
	if (r->aborted) {
		log_debug("claim of %s lost before sending: handed back unsent", dl->job->event_id);
		dl->state = DEL_HANDBACK;
		delivery_done(d, dl);
		pump(ep);
		schedule_kick(d);
		return;
	}
	dl->holds_slot = true;
	dl->attempts++;
	histogram_observe(&ep->duration, r->seconds);
	if (r->status >= 200 && r->status < 300) {
		dl->state = DEL_OK;
		ep->delivered++;
		histogram_observe(&d->lag, (double)(realtime_us() - dl->job->created_us) / 1e6);
		log_debug("delivered %s to %s (HTTP %ld, %.3f s)", dl->job->event_id, cfg->name,
			  r->status, r->seconds);
	} else {
		char err[256];
		if (r->status)
			snprintf(err, sizeof(err), "HTTP %ld", r->status);
		else
			snprintf(err, sizeof(err), "%s", r->error ? r->error : "unknown error");
		free(dl->error);
		dl->error = strdup(err);
		ep->failed++;
		if (dl->attempts > (int)cfg->max_retries) {
			dl->state = DEL_DROPPED;
			ep->dropped++;
			audit_drop(dl);
		} else {
			uint64_t ra = 0;
			if ((r->status == 429 || r->status == 503) && r->retry_after &&
			    !backoff_parse_retry_after(r->retry_after, time(NULL), &ra))
				ra = 0;
			dl->delay_ms = backoff_next_ms((unsigned)dl->attempts, cfg->backoff_max_ms,
						       ra, rng_next(d));
			dl->state = DEL_FAILED;
			log_debug("delivery of %s to %s failed (%s), attempt %d, retry in %" PRIu64
				  " ms",
				  dl->job->event_id, cfg->name, err, dl->attempts, dl->delay_ms);
		}
	}
	delivery_done(d, dl);
	pump(ep);
	schedule_kick(d);
}

/* Never send what another daemon may have taken: after a freeze, say, the
 * lease ran out, or a renewal found the row claimed again. */
static bool claim_held(const struct job *j, const struct dispatcher *d)
{
	return !j->lost && now_ms() - j->leased_ms < d->cfg->lease_ms;
}

/* Asked by the HTTP client at the last moment: a process frozen between
 * starting a POST and writing it must not send it once it wakes. */
static bool may_send_cb(void *arg)
{
	const struct delivery *dl = arg;
	return claim_held(dl->job, dl->ep->d);
}

static void post_start(struct endpoint *ep, struct delivery *dl)
{
	struct job *j = dl->job;
	if (!claim_held(j, ep->d)) {
		log_debug("claim of %s lost: handed back unsent", j->event_id);
		dl->state = DEL_HANDBACK;
		delivery_done(ep->d, dl);
		return;
	}
	char sig[sizeof("X-Signature-256: ") + SIGN_HEADER_LEN];
	const char *extra = NULL;
	if (ep->signer) {
		memcpy(sig, "X-Signature-256: ", 17);
		if (!signer_sign(ep->signer, j->body, j->len, sig + 17)) {
			log_error("cannot sign for %s: OpenSSL failed", ep->cfg->name);
			dl->state = DEL_HANDBACK;
			delivery_done(ep->d, dl);
			return;
		}
		extra = sig;
	}
	struct http_request req = {
	    .url = ep->cfg->url,
	    .body = j->body,
	    .len = j->len,
	    .headers = ep->headers,
	    .extra_header = extra,
	    .timeout_ms = ep->cfg->timeout_ms,
	    .ca_file = ep->cfg->ca_file,
	    .may_send = may_send_cb,
	};
	if (http_post(ep->d->http, &req, post_done_cb, dl) != 0) {
		log_error("cannot start a POST to %s: out of memory", ep->cfg->name);
		dl->state = DEL_HANDBACK;
		delivery_done(ep->d, dl);
		return;
	}
	dl->state = DEL_RUNNING;
	ep->in_flight++;
}

/* Start queued deliveries while the endpoint has free slots. */
static void pump(struct endpoint *ep)
{
	while (ep->in_flight < ep->cap && ep->q_head && !ep->d->stopping) {
		struct delivery *dl = ep->q_head;
		ep->q_head = dl->next;
		if (!ep->q_head)
			ep->q_tail = NULL;
		ep->queued--;
		post_start(ep, dl);
	}
}

static unsigned endpoint_room(const struct endpoint *ep)
{
	unsigned held = ep->in_flight + ep->unsettled + ep->queued;
	return held < 2 * ep->cap ? 2 * ep->cap - held : 0;
}

/* Queue a delivery, or hand it back to the database when its endpoint holds
 * all it may: a slow endpoint's backlog waits in the database, not here. */
static void delivery_assign(struct dispatcher *d, struct delivery *dl)
{
	struct endpoint *ep = dl->ep;
	if (d->stopping || endpoint_room(ep) == 0) {
		dl->state = DEL_HANDBACK;
		ep->backlog = true;
		return;
	}
	dl->state = DEL_QUEUED;
	dl->next = NULL;
	if (ep->q_tail)
		ep->q_tail->next = dl;
	else
		ep->q_head = dl;
	ep->q_tail = dl;
	ep->queued++;
	dl->job->pending++;
}

/* ---- jobs ---- */

static void drop_oversize(struct dispatcher *d, struct delivery *dl, size_t data_len)
{
	char err[160];
	snprintf(err, sizeof(err), "event too large: %zu bytes of data, max_event_bytes is %u",
		 data_len, d->cfg->max_event_bytes);
	dl->error = strdup(err);
	dl->state = DEL_DROPPED;
	dl->ep->dropped++;
	audit_drop(dl);
}

static void job_free(struct job *j)
{
	for (unsigned i = 0; i < j->ndel; i++)
		free(j->del[i].error);
	free(j->event_id);
	free(j->type);
	free(j->body);
	free(j);
}

static void job_unlink(struct dispatcher *d, struct job *j)
{
	if (j->prev)
		j->prev->next = j->next;
	else
		d->jobs = j->next;
	if (j->next)
		j->next->prev = j->prev;
	d->njobs--;
}

/* Every delivery of the job has an outcome: record it for the next settlement. */
static void job_finish(struct dispatcher *d, struct job *j)
{
	struct store_batch *b = d->pending;
	if (d->pending_jobs++ == 0)
		d->pending_since_us = mono_us();
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
	job_free(j);
	schedule_kick(d);
}

static const char *field(PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

static bool endpoint_wants(const struct endpoint_config *c, const char *type, const char *subject)
{
	for (size_t k = 0; k < c->nevents; k++)
		if (pattern_match(c->events[k], type))
			return pattern_prefix_passes(c->prefix, type, subject);
	return false;
}

/* Build a job from a claimed row: the envelope once, then its deliveries. */
static void job_from_row(struct dispatcher *d, PGresult *res, int row, struct endpoint *retry_ep)
{
	const char *type = field(res, row, STORE_COL_TYPE);
	const char *subject = field(res, row, STORE_COL_SUBJECT);
	int64_t id = strtoll(PQgetvalue(res, row, STORE_COL_ID), NULL, 10);
	const char *token = PQgetvalue(res, row, STORE_COL_TOKEN);

	bool wants[d->neps ? d->neps : 1];
	unsigned n = 0;
	if (retry_ep) {
		n = 1;
	} else {
		for (size_t i = 0; i < d->neps; i++) {
			wants[i] = endpoint_wants(d->eps[i].cfg, type, subject);
			n += wants[i];
			d->eps[i].share += wants[i];
		}
		if (n == 0) {
			/* Nobody wants it: remove it, counted. */
			d->unmatched++;
			log_debug("event %s (%s) matches no endpoint: removed",
				  PQgetvalue(res, row, STORE_COL_EVENT_ID), type);
			store_batch_new_done(d->pending, id, token);
			return;
		}
	}

	struct job *j = calloc(1, sizeof(*j) + n * sizeof(struct delivery));
	if (!j) {
		/* The lease expires and the event is claimed again. */
		log_error("out of memory: event %" PRId64 " left to its lease", id);
		return;
	}
	j->id = id;
	j->leased_ms = now_ms();
	snprintf(j->token, sizeof(j->token), "%s", token);
	j->retry = retry_ep != NULL;
	j->event_id = strdup(PQgetvalue(res, row, STORE_COL_EVENT_ID));
	j->type = strdup(type);
	const char *source = field(res, row, STORE_COL_SOURCE);
	j->created_us = strtoll(PQgetvalue(res, row, STORE_COL_CREATED_US), NULL, 10);
	/* An oversized event is never built: dropped for every endpoint, audited. */
	size_t data_len = (size_t)PQgetlength(res, row, STORE_COL_DATA);
	bool oversize = data_len > d->cfg->max_event_bytes;
	if (!oversize) {
		j->body =
		    event_envelope(j->event_id, source ? source : d->cfg->source, type, subject,
				   j->created_us, PQgetvalue(res, row, STORE_COL_DATA), &j->len);
		oversize = j->body && j->len > d->cfg->max_event_bytes;
	}
	j->ndel = n;
	j->next = d->jobs;
	if (d->jobs)
		d->jobs->prev = j;
	d->jobs = j;
	d->njobs++;

	unsigned k = 0;
	for (size_t i = 0; i < d->neps && k < n; i++) {
		struct endpoint *ep = &d->eps[i];
		if (retry_ep ? ep != retry_ep : !wants[i])
			continue;
		struct delivery *dl = &j->del[k++];
		dl->job = j;
		dl->ep = ep;
		if (retry_ep)
			dl->attempts = atoi(PQgetvalue(res, row, STORE_COL_ATTEMPTS));
		if (oversize && j->event_id && j->type)
			drop_oversize(d, dl, data_len);
		else if (!j->event_id || !j->type || !j->body)
			dl->state = DEL_HANDBACK;
		else
			delivery_assign(d, dl);
	}
	if (j->pending == 0)
		job_finish(d, j);
}

/* ---- claims ---- */

static void busy_release_cb(PGresult *res, void *arg)
{
	(void)arg;
	if (res && PQresultStatus(res) != PGRES_TUPLES_OK)
		log_warn("cannot release the busy lock: %s", PQresultErrorMessage(res));
}

static void busy_release(struct dispatcher *d)
{
	d->busy_lock = LOCK_NONE;
	if (store_busy_lock(d->listen, false, busy_release_cb, d) != 0)
		log_debug("busy lock not released: connection down, which released it");
}

static void busy_take_cb(PGresult *res, void *arg)
{
	struct dispatcher *d = arg;
	if (d->busy_lock != LOCK_TAKING)
		return; /* the connection went down meanwhile, and the lock with it */
	d->busy_lock = LOCK_NONE;
	if (!res)
		return;
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		log_warn("cannot take the busy lock: %s", PQresultErrorMessage(res));
		return;
	}
	/* 'f': another dispatcher holds it (it is draining too), or a
	 * producer's trigger was testing it just then: try again later. */
	if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
		d->busy_try_at = now_ms() + DISPATCHER_BUSY_TRY_MS;
		return;
	}
	d->busy_lock = LOCK_HELD;
	if (!d->busy) /* drained while we were asking */
		busy_release(d);
}

/* Draining: tell producers no wake-up is needed (see sql/004). Taken again
 * at once after our own release: until it is, every producer notifies. */
static void mark_busy(struct dispatcher *d)
{
	d->busy = true;
	if (d->busy_lock != LOCK_NONE || !d->listening || now_ms() < d->busy_try_at)
		return;
	if (store_busy_lock(d->listen, true, busy_take_cb, d) == 0)
		d->busy_lock = LOCK_TAKING;
}

static void mark_idle(struct dispatcher *d)
{
	d->busy = false;
	if (d->busy_lock == LOCK_HELD)
		busy_release(d);
}

static void claim_new_cb(PGresult *res, void *arg)
{
	struct dispatcher *d = arg;
	d->claiming = false;
	if (!res) {
		schedule_kick(d);
		return;
	}
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		log_error("claim of new events failed: %s", PQresultErrorMessage(res));
		d->want_new = false; /* the sweep tries again */
		check_drained(d);
		return;
	}
	int n = PQntuples(res);
	/* A full batch: the next claim starts after it. Anything else: from
	 * the start again, where rows may have become free (released leases,
	 * late commits of ids below the last one claimed). */
	bool from_start = d->claim_after == 0;
	d->claim_after = 0;
	if (n > 0 && (unsigned)n >= d->claim_want)
		for (int i = 0; i < n; i++) {
			int64_t id = strtoll(PQgetvalue(res, i, STORE_COL_ID), NULL, 10);
			if (id > d->claim_after)
				d->claim_after = id;
		}
	if (n > 0 && !d->stopping) {
		/* Rows keep coming: claim again without waiting for a wake-up,
		 * at once or, under load, after a pause that lets them gather. */
		bool full = (unsigned)n >= d->claim_want;
		uint64_t span_us = d->claim_start_us - d->prev_claim_start_us;
		bool load = n >= 2 && (uint64_t)n * 1000000 >= DISPATCHER_PACE_MIN_RATE * span_us;
		/* The lock only once two claims in a row saw the load: a pair of
		 * rows close together in a light stream is no reason to silence
		 * producers (their wake-ups still cut the pause short). */
		bool sustained = load && d->loaded;
		d->loaded = load;
		if (full || sustained)
			mark_busy(d);
		d->want_new = full || !load;
		d->pacing = !d->want_new;
		if (d->pacing) {
			uint64_t next = d->claim_start_us + DISPATCHER_PACE_MS * 1000;
			uint64_t now = mono_us();
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
		d->share_rows = (unsigned)n;
		for (size_t i = 0; i < d->neps; i++)
			d->eps[i].share = 0;
	}
	for (int i = 0; i < n; i++)
		job_from_row(d, res, i, NULL);
	for (size_t i = 0; i < d->neps; i++)
		pump(&d->eps[i]);
	log_debug("claimed %d new events", n);
	schedule_kick(d);
}

static struct endpoint *endpoint_by_name(struct dispatcher *d, const char *name)
{
	for (size_t i = 0; i < d->neps; i++)
		if (strcmp(d->eps[i].cfg->name, name) == 0)
			return &d->eps[i];
	return NULL;
}

static void claim_retries_cb(PGresult *res, void *arg)
{
	struct dispatcher *d = arg;
	d->claiming = false;
	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
		if (res)
			log_error("claim of retries failed: %s", PQresultErrorMessage(res));
		schedule_kick(d);
		return;
	}
	int n = PQntuples(res);
	for (int i = 0; i < n; i++) {
		struct endpoint *ep = endpoint_by_name(d, PQgetvalue(res, i, STORE_COL_ENDPOINT));
		if (!ep)
			continue; /* cannot happen: we asked for these names; the lease expires */
		ep->retry_got++;
		job_from_row(d, res, i, ep);
	}
	bool more = false;
	for (size_t i = 0; i < d->neps; i++) {
		struct endpoint *ep = &d->eps[i];
		if (ep->retry_req > 0) /* a full answer means more may be due */
			ep->backlog = ep->retry_got >= ep->retry_req;
		more |= ep->backlog;
		ep->retry_req = ep->retry_got = 0;
		pump(ep);
	}
	log_debug("claimed %d due retries", n);
	/* Nothing more is due now: time the next retry that will be. */
	if (!more && !d->stopping &&
	    store_next_due(d->work, d->ep_names, d->neps, next_due_cb, d) != 0)
		log_debug("next retry not looked up: connection down");
	schedule_kick(d);
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

static bool claim_new(struct dispatcher *d)
{
	unsigned want = claim_rows(d, false);
	/* Claim in useful batches unless idle, when latency matters most. */
	unsigned full = claim_rows(d, true);
	if (want == 0 || (d->njobs > 0 && want * 2 < full))
		return false;
	/* Set first: a connection lost while sending calls the callback at once. */
	d->claiming = true;
	d->claim_notifies = d->notifies;
	d->claim_want = want;
	d->prev_claim_start_us = d->claim_start_us;
	d->claim_start_us = mono_us();
	if (store_claim_new(d->work, want, d->claim_after, d->cfg->lease_ms, claim_new_cb, d) !=
	    0) {
		d->claiming = false;
		return false;
	}
	return true;
}

static bool claim_retries(struct dispatcher *d)
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
	d->claiming = true; /* first: see claim_new() */
	if (store_claim_retries(d->work, names, limits, n, d->cfg->lease_ms, claim_retries_cb, d) !=
	    0) {
		d->claiming = false;
		for (size_t i = 0; i < d->neps; i++)
			d->eps[i].retry_req = 0;
		return false;
	}
	return true;
}

static bool retry_wanted(const struct dispatcher *d)
{
	if (d->want_retry)
		return true;
	for (size_t i = 0; i < d->neps; i++)
		if (d->eps[i].backlog && endpoint_room(&d->eps[i]) > 0)
			return true;
	return false;
}

/* ---- settlement ---- */

static void arm_retry(struct dispatcher *d, uint64_t delay_ms)
{
	uint64_t at = now_ms() + delay_ms;
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
		for (size_t i = 0; i < d->neps; i++) {
			d->eps[i].unsettled -= d->inflight_slots[i];
			d->inflight_slots[i] = 0;
			pump(&d->eps[i]);
		}
	} else {
		/* Sent again once the connection is back: every statement is idempotent. */
		d->inflight_sent = false;
		/* An SQL error: back off before trying again. */
		if (pgconn_is_up(d->settle))
			pgconn_reconnect(d->settle);
	}
	schedule_kick(d);
	check_drained(d);
}

static void settle_flush(struct dispatcher *d)
{
	/* Down: settle_up_cb kicks again (sending now would fail at once, call
	 * settle_cb, kick, and so on without end). */
	if ((d->inflight && d->inflight_sent) || !pgconn_is_up(d->settle))
		return;
	if (!d->inflight) {
		if (store_batch_empty(d->pending))
			return;
		uint64_t due = d->pending_since_us + DISPATCHER_PACE_MS * 1000, now = mono_us();
		if (d->pacing && !d->stopping && d->pending_jobs < DISPATCHER_SETTLE_MIN_JOBS &&
		    now < due) {
			struct timeval tv = {.tv_usec = (suseconds_t)(due - now)};
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
		d->pending_slots = slots; /* all zero: released by the last settle_cb */
		log_debug("settling %u events", d->pending_jobs);
		d->pending_jobs = 0;
	}
	/* Set first: a connection lost while sending calls settle_cb at once. */
	d->inflight_sent = true;
	if (store_settle(d->settle, d->inflight, settle_cb, d) != 0)
		d->inflight_sent = false;
}

/* The scheduler: settle first, then claim what the endpoints have room for. */
static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct dispatcher *d = arg;
	settle_flush(d);
	if (!pgconn_is_up(d->work)) {
		check_drained(d);
		return;
	}
	if (d->stopping || d->claiming || !d->schema_ok) {
		check_drained(d);
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

/* ---- connections ---- */

static void unknown_endpoints_cb(PGresult *res, void *arg)
{
	(void)arg;
	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK)
		return;
	for (int i = 0; i < PQntuples(res); i++)
		log_warn("%s deliveries are queued for endpoint \"%s\", which is not configured:"
			 " they stay queued until it returns or an operator purges them",
			 PQgetvalue(res, i, 1), PQgetvalue(res, i, 0));
}

static void schema_cb(PGresult *res, void *arg)
{
	struct dispatcher *d = arg;
	if (!res)
		return; /* connection lost: checked again on reconnect */
	int version = -1;
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
	    !PQgetisnull(res, 0, 0))
		version = atoi(PQgetvalue(res, 0, 0));
	if (version < STORE_SCHEMA_VERSION) {
		char why[512];
		if (PQresultStatus(res) != PGRES_TUPLES_OK)
			snprintf(why, sizeof(why), "%s", PQresultErrorMessage(res));
		else
			snprintf(why, sizeof(why), "schema version %d", version);
		why[strcspn(why, "\n")] = '\0';
		log_error("the database schema is missing or older than version %d (%s): apply "
			  "the migrations in sql/ with psql -v ON_ERROR_STOP=1 -f",
			  STORE_SCHEMA_VERSION, why);
		if (!d->started) {
			d->exit_code = 1;
			event_base_loopbreak(d->base);
		} else {
			pgconn_reconnect(d->work);
		}
		return;
	}
	d->schema_ok = true;
	pgconn_reset_backoff(d->work);
	if (!d->started) {
		d->started = true;
		if (store_unknown_endpoints(d->work, d->ep_names, d->neps, unknown_endpoints_cb,
					    d) != 0)
			log_warn("could not look for deliveries queued for unknown endpoints");
	}
	d->want_new = d->want_retry = true;
	d->wakeups[WAKE_RECONNECT]++;
	schedule_kick(d);
}

static void session_setup_cb(PGresult *res, void *arg)
{
	(void)arg;
	if (res && PQresultStatus(res) != PGRES_TUPLES_OK)
		log_warn("cannot set synchronous_commit = off and plan_cache_mode = "
			 "force_custom_plan (commits wait for the WAL flush): %s",
			 PQresultErrorMessage(res));
}

/* Claims and settlements commit without waiting for the WAL flush (see
 * store_session_setup): a slow disk then delays producers, not deliveries.
 * Their prepared statements are planned for each run's values. */
static void work_up_cb(void *arg)
{
	struct dispatcher *d = arg;
	if ((!d->pooled && store_session_setup(d->work, session_setup_cb, d) != 0) ||
	    store_schema_version(d->work, schema_cb, d) != 0)
		pgconn_reconnect(d->work);
}

static void settle_up_cb(void *arg)
{
	struct dispatcher *d = arg;
	if (!d->pooled && store_session_setup(d->settle, session_setup_cb, d) != 0)
		pgconn_reconnect(d->settle);
	schedule_kick(d); /* settlements that waited for it */
}

static void work_down_cb(void *arg)
{
	struct dispatcher *d = arg;
	d->schema_ok = false;
	d->claim_after = 0;
	mark_idle(d); /* no claims until it is back */
}

static void listen_result_cb(PGresult *res, void *arg)
{
	struct dispatcher *d = arg;
	if (!res)
		return;
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		log_error("LISTEN failed: %s", PQresultErrorMessage(res));
		pgconn_reconnect(d->listen);
		return;
	}
	d->listening = true;
	pgconn_reset_backoff(d->listen);
	log_info("listening on channel " DISPATCHER_CHANNEL);
	/* Notifications sent while we were not listening are lost: catch up now. */
	d->want_new = d->want_retry = true;
	d->wakeups[WAKE_RECONNECT]++;
	schedule_kick(d);
}

static void listen_up_cb(void *arg)
{
	struct dispatcher *d = arg;
	if (pgconn_query(d->listen, "LISTEN " DISPATCHER_CHANNEL, 0, NULL, listen_result_cb, d) !=
	    0)
		pgconn_reconnect(d->listen);
}

static void listen_down_cb(void *arg)
{
	struct dispatcher *d = arg;
	d->listening = false;
	d->busy_lock = LOCK_NONE; /* released with the session */
}

static void notify_cb(const char *channel, void *arg)
{
	(void)channel;
	struct dispatcher *d = arg;
	if (!d->want_new)
		d->wakeups[WAKE_NOTIFY]++; /* a burst of notifications is one wake-up */
	d->want_new = true;
	d->notifies++;
	schedule_kick(d);
}

/* ---- timers ---- */

static void next_due_cb(PGresult *res, void *arg)
{
	struct dispatcher *d = arg;
	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 ||
	    PQgetisnull(res, 0, 0) || d->stopping)
		return;
	long long ms = atoll(PQgetvalue(res, 0, 0));
	arm_retry(d, (ms > 0 ? (uint64_t)ms : 0) + DISPATCHER_RETRY_SLACK_MS);
}

static void ignore_result_cb(PGresult *res, void *arg)
{
	(void)arg;
	if (res && PQresultStatus(res) != PGRES_COMMAND_OK)
		log_warn("sweep cleanup failed: %s", PQresultErrorMessage(res));
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
		if (store_cleanup(d->work, ignore_result_cb, d) != 0 ||
		    store_next_due(d->work, d->ep_names, d->neps, next_due_cb, d) != 0)
			log_debug("sweep queries not sent: connection down");
	}
	schedule_kick(d);
}

static void renew_result_cb(PGresult *res, void *arg)
{
	struct dispatcher *d = arg;
	bool ok = res && PQresultStatus(res) == PGRES_TUPLES_OK;
	if (!ok)
		log_warn("lease renewal failed: %s",
			 res ? PQresultErrorMessage(res) : "connection lost");
	for (int i = 0; ok && i < PQntuples(res); i++) {
		int64_t id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
		const char *ep = PQgetisnull(res, i, 1) ? NULL : PQgetvalue(res, i, 1);
		for (struct job *j = d->jobs; j; j = j->next) {
			if (j->renewing && j->id == id && j->retry == (ep != NULL) &&
			    (!ep || strcmp(ep, j->del[0].ep->cfg->name) == 0)) {
				/* From when it was sent: the database set it later. */
				j->leased_ms = d->renewal_sent_ms;
				j->renewing = false;
				break;
			}
		}
	}
	/* Rows a successful renewal did not return are no longer ours. */
	for (struct job *j = d->jobs; j; j = j->next) {
		if (j->renewing && ok)
			j->lost = true;
		j->renewing = false;
	}
	store_batch_free(d->renewal);
	d->renewal = NULL;
}

/* Work can wait in memory for its endpoint's slots, then for its POST and
 * its settlement: keep the leases of everything still held from expiring,
 * or another claim (ours too) would take the rows and send them again. */
static void renew_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct dispatcher *d = arg;
	if (d->renewal || !pgconn_is_up(d->work))
		return;
	uint64_t now = now_ms();
	struct store_batch *b = NULL;
	for (struct job *j = d->jobs; j; j = j->next) {
		if (now - j->leased_ms < d->cfg->lease_ms / 2)
			continue;
		if (!b && !(b = store_batch_new()))
			return;
		if (j->retry)
			store_batch_renew_retry(b, j->id, j->del[0].ep->cfg->name, j->token);
		else
			store_batch_renew_new(b, j->id, j->token);
		j->renewing = true;
	}
	if (!b)
		return;
	d->renewal = b;
	d->renewal_sent_ms = now;
	if (store_renew(d->work, b, d->cfg->lease_ms, renew_result_cb, d) != 0)
		renew_result_cb(NULL, d);
}

static void settle_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	schedule_kick(arg);
}

/* A claim later: paced under load, or the last one after draining. */
static void claim_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct dispatcher *d = arg;
	d->want_new = true;
	schedule_kick(d);
}

static void retry_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct dispatcher *d = arg;
	d->retry_deadline = 0;
	d->want_retry = true;
	d->wakeups[WAKE_RETRY]++;
	schedule_kick(d);
}

static void stats_result_cb(PGresult *res, void *arg)
{
	struct dispatcher *d = arg;
	d->stats_running = false;
	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		d->stats_valid = false;
		return;
	}
	d->depth = atof(PQgetvalue(res, 0, 0));
	d->oldest_age = atof(PQgetvalue(res, 0, 1));
	d->queue_usage = atof(PQgetvalue(res, 0, 2));
	d->stats_valid = true;
}

static void stats_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct dispatcher *d = arg;
	if (d->stats_running || !pgconn_is_up(d->work) || !d->schema_ok)
		return;
	d->stats_running = true; /* first: see claim_new() */
	if (store_stats(d->work, stats_result_cb, d) != 0)
		d->stats_running = false;
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
	schedule_kick(d);
	check_drained(d);
}

/* ---- lifecycle ---- */

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
	unsigned cap = d->neps ? cfg->max_in_flight / (unsigned)d->neps : 1;
	for (size_t i = 0; i < d->neps; i++) {
		struct endpoint *ep = &d->eps[i];
		ep->d = d;
		ep->cfg = &cfg->endpoints[i];
		ep->cap = cap ? cap : 1;
		d->ep_names[i] = ep->cfg->name;
		struct curl_slist *h = NULL, *t;
		const char *lines[] = {"Content-Type: application/cloudevents+json",
				       "User-Agent: s3o-notify/" S3O_VERSION,
				       "Expect:"}; /* no 100-continue round trip */
		for (size_t k = 0; k < sizeof(lines) / sizeof(lines[0]); k++) {
			t = curl_slist_append(h, lines[k]);
			if (!t) {
				curl_slist_free_all(h);
				goto fail;
			}
			h = t;
		}
		ep->headers = h;
		if (ep->cfg->secret[0] && !(ep->signer = signer_new(ep->cfg->secret)))
			goto fail;
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
	if (histogram_init(&d->lag, lag_bounds, sizeof(lag_bounds) / sizeof(lag_bounds[0])) != 0)
		goto fail;
	if (d->pooled) {
		pgconn_unnamed_only(d->work);
		pgconn_unnamed_only(d->settle);
		log_info("listen_url is set, so url is taken for a transaction pooler: no session "
			 "settings and no prepared statements on it");
	}
	for (size_t i = 0; i < d->neps; i++) /* the name only: a URL may hold a password */
		log_info("endpoint %s: POSTs through %s", d->eps[i].cfg->name,
			 http_builtin(d->http, d->eps[i].cfg->url)
			     ? "the built-in HTTP/1.1 client"
			     : "libcurl (https, a host name, a user in the URL, or a proxy)");
	for (size_t i = 0; i < d->neps; i++)
		if (histogram_init(&d->eps[i].duration, duration_bounds,
				   sizeof(duration_bounds) / sizeof(duration_bounds[0])) != 0)
			goto fail;
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
	struct event *evs[] = {d->sweep_timer, d->retry_timer, d->shutdown_timer, d->kick_ev,
			       d->stats_timer, d->claim_timer, d->renew_timer,	  d->settle_timer};
	for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++)
		if (evs[i])
			event_free(evs[i]);
	pgconn_free(d->work);
	pgconn_free(d->settle);
	pgconn_free(d->listen);
	for (size_t i = 0; d->eps && i < d->neps; i++) {
		curl_slist_free_all(d->eps[i].headers);
		signer_free(d->eps[i].signer);
	}
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
	struct timeval tv = {.tv_sec = (time_t)(d->cfg->sweep_interval_ms / 1000),
			     .tv_usec = (suseconds_t)(d->cfg->sweep_interval_ms % 1000) * 1000};
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
	schedule_kick(d);
	check_drained(d);
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

void dispatcher_metrics(const struct dispatcher *d, struct metrics_buf *out)
{
	struct metrics_label l[1];
	metrics_header(out, "s3o_notification_build_info", "Version of s3o-notifyd.", "gauge");
	l[0] = (struct metrics_label){"version", S3O_VERSION};
	metrics_sample_uint(out, "s3o_notification_build_info", l, 1, 1);

	metrics_header(out, "s3o_notification_db_connected",
		       "1 while the database connections are up, else 0.", "gauge");
	metrics_sample_uint(out, "s3o_notification_db_connected", NULL, 0,
			    pgconn_is_up(d->work) && pgconn_is_up(d->settle) &&
				pgconn_is_up(d->listen));

	if (d->stats_valid) {
		metrics_header(out, "s3o_notification_outbox_depth",
			       "Deliveries still queued: new events, in flight or awaiting retry.",
			       "gauge");
		metrics_sample(out, "s3o_notification_outbox_depth", NULL, 0, d->depth);
		metrics_header(out, "s3o_notification_oldest_pending_age_seconds",
			       "Age of the oldest event still queued (0 when none).", "gauge");
		metrics_sample(out, "s3o_notification_oldest_pending_age_seconds", NULL, 0,
			       d->oldest_age);
		metrics_header(out, "s3o_notification_queue_usage",
			       "pg_notification_queue_usage(): when full, producers' commits fail.",
			       "gauge");
		metrics_sample(out, "s3o_notification_queue_usage", NULL, 0, d->queue_usage);
	}

	static const struct {
		const char *name, *help;
		size_t off;
	} counters[] = {
	    {"s3o_notifications_delivered_total", "Deliveries answered with a 2xx.",
	     offsetof(struct endpoint, delivered)},
	    {"s3o_notifications_failed_total", "Failed delivery attempts.",
	     offsetof(struct endpoint, failed)},
	    {"s3o_notifications_dropped_total", "Deliveries dropped after max_retries.",
	     offsetof(struct endpoint, dropped)},
	};
	for (size_t c = 0; c < sizeof(counters) / sizeof(counters[0]); c++) {
		metrics_header(out, counters[c].name, counters[c].help, "counter");
		for (size_t i = 0; i < d->neps; i++) {
			l[0] = (struct metrics_label){"endpoint", d->eps[i].cfg->name};
			const uint64_t *v =
			    (const uint64_t *)((const char *)&d->eps[i] + counters[c].off);
			metrics_sample_uint(out, counters[c].name, l, 1, *v);
		}
	}
	metrics_header(out, "s3o_notifications_unmatched_total",
		       "Events that matched no endpoint and were removed.", "counter");
	metrics_sample_uint(out, "s3o_notifications_unmatched_total", NULL, 0, d->unmatched);

	metrics_header(out, "s3o_notification_wakeups_total", "Reasons the dispatcher woke up.",
		       "counter");
	for (int w = 0; w < WAKE_COUNT; w++) {
		l[0] = (struct metrics_label){"reason", wakeup_names[w]};
		metrics_sample_uint(out, "s3o_notification_wakeups_total", l, 1, d->wakeups[w]);
	}

	metrics_header(out, "s3o_notification_delivery_duration_seconds",
		       "Duration of one POST, any outcome.", "histogram");
	for (size_t i = 0; i < d->neps; i++) {
		l[0] = (struct metrics_label){"endpoint", d->eps[i].cfg->name};
		metrics_histogram(out, "s3o_notification_delivery_duration_seconds", l, 1,
				  &d->eps[i].duration);
	}
	metrics_header(out, "s3o_notification_lag_seconds",
		       "From the event's insert to the 2xx of a delivery.", "histogram");
	metrics_histogram(out, "s3o_notification_lag_seconds", NULL, 0, &d->lag);
}
