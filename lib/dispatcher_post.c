/* dispatcher_post: endpoints, jobs and deliveries: a claimed row becomes a
 * job with a delivery per matching endpoint, queued behind the endpoint's
 * slots, POSTed, and given its outcome. */
#include "dispatcher_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backoff.h"
#include "event.h"
#include "log.h"
#include "pattern.h"

static uint32_t rng_next(struct dispatcher *d)
{
	/* xorshift32: jitter only, no secrecy needed */
	uint32_t x = d->rng;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return d->rng = x;
}

void delivery_done(struct dispatcher *d, struct delivery *dl)
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
		endpoint_pump(ep);
		dispatcher_kick(d);
		return;
	}
	dl->holds_slot = true;
	dl->attempts++;
	histogram_observe(&ep->duration, r->seconds);
	if (r->status >= 200 && r->status < 300) {
		dl->state = DEL_OK;
		ep->delivered++;
		histogram_observe(&d->lag,
				  (double)(clock_realtime_us() - dl->job->created_us) / 1e6);
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
	endpoint_pump(ep);
	dispatcher_kick(d);
}

/* Never send what another daemon may take before the POST ends: after a
 * freeze, say, the lease ran out, or a renewal found the row claimed again.
 * The lease must last until the POST's timeout at least: a 2xx that came
 * after it had run out would be settled too late, after another claim had
 * taken the row and sent it again. (Renewals keep it from then on until the
 * settlement.) */
static bool lease_covers(const struct job *j, const struct dispatcher *d, uint64_t until_ms)
{
	return !j->lost && until_ms - j->leased_ms < d->cfg->lease_ms;
}

/* Asked by the HTTP client at the last moment: a process frozen between
 * starting a POST and writing it must not send it once it wakes. */
static bool may_send_cb(void *arg)
{
	const struct delivery *dl = arg;
	return lease_covers(dl->job, dl->ep->d, dl->deadline_ms);
}

static void post_start(struct endpoint *ep, struct delivery *dl)
{
	struct job *j = dl->job;
	dl->deadline_ms = clock_mono_ms() + ep->cfg->timeout_ms;
	if (!lease_covers(j, ep->d, dl->deadline_ms)) {
		log_debug("claim of %s lost or too short for a POST: handed back unsent",
			  j->event_id);
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
	    .body = j->body,
	    .len = j->len,
	    .extra_header = extra,
	    .timeout_ms = ep->cfg->timeout_ms,
	    .may_send = may_send_cb,
	};
	if (http_post(ep->d->http, ep->target, &req, post_done_cb, dl) != 0) {
		log_error("cannot start a POST to %s: out of memory", ep->cfg->name);
		dl->state = DEL_HANDBACK;
		delivery_done(ep->d, dl);
		return;
	}
	dl->state = DEL_RUNNING;
	ep->in_flight++;
}

/* Start queued deliveries while the endpoint has free slots. */
void endpoint_pump(struct endpoint *ep)
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

unsigned endpoint_room(const struct endpoint *ep)
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

void job_free(struct job *j)
{
	for (unsigned i = 0; i < j->ndel; i++)
		free(j->del[i].error);
	free(j->event_id);
	free(j->type);
	free(j->body);
	free(j);
}

void job_free_list(struct job *j)
{
	while (j) {
		struct job *next = j->next;
		job_free(j);
		j = next;
	}
}

void job_unlink(struct dispatcher *d, struct job *j)
{
	if (j->prev)
		j->prev->next = j->next;
	else
		d->jobs = j->next;
	if (j->next)
		j->next->prev = j->prev;
	d->njobs--;
}

static bool endpoint_wants(const struct endpoint_config *c, const char *type, const char *subject)
{
	for (size_t k = 0; k < c->nevents; k++)
		if (pattern_match(c->events[k], type))
			return pattern_prefix_passes(c->prefix, type, subject);
	return false;
}

/* Build a job from a claimed row: the envelope once, then its deliveries. */
void job_from_row(struct dispatcher *d, const struct store_row *row, struct endpoint *retry_ep)
{
	const char *type = row->type, *subject = row->subject;
	int64_t id = row->id;

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
			log_debug("event %s (%s) matches no endpoint: removed", row->event_id,
				  type);
			store_batch_new_done(d->pending, id, row->token);
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
	j->leased_ms = d->claim_sent_ms;
	snprintf(j->token, sizeof(j->token), "%s", row->token);
	j->retry = retry_ep != NULL;
	j->event_id = strdup(row->event_id);
	j->type = strdup(type);
	j->created_us = row->created_us;
	/* An oversized event is never built: dropped for every endpoint, audited. */
	size_t data_len = row->data_len;
	bool oversize = data_len > d->cfg->max_event_bytes;
	if (!oversize) {
		j->body = event_envelope(j->event_id, row->source ? row->source : d->cfg->source,
					 type, subject, j->created_us, row->data, &j->len);
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
			dl->attempts = row->attempts;
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

/* An endpoint's share of max_in_flight, its HTTP target and its signer.
 * On failure the caller still calls endpoint_release(). */
int endpoint_init(struct dispatcher *d, struct endpoint *ep, const struct endpoint_config *cfg)
{
	unsigned cap = d->neps ? d->cfg->max_in_flight / (unsigned)d->neps : 1;
	ep->d = d;
	ep->cfg = cfg;
	ep->cap = cap ? cap : 1;
	static const char *const lines[] = {"Content-Type: application/cloudevents+json",
					    "User-Agent: s3o-notify/" S3O_VERSION};
	ep->target =
	    http_target_new(cfg->url, lines, sizeof(lines) / sizeof(lines[0]), cfg->ca_file);
	if (!ep->target)
		return -1;
	if (cfg->secret[0] && !(ep->signer = signer_new(cfg->secret)))
		return -1;
	return 0;
}

void endpoint_release(struct endpoint *ep)
{
	http_target_free(ep->target);
	signer_free(ep->signer);
}
