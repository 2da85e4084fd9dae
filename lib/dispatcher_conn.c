/* dispatcher_conn: what the dispatcher does when its connections come up
 * or go down: session setup and the schema check on work, LISTEN on
 * listen, and the wake-ups NOTIFY brings. */
#include "dispatcher_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

static void unknown_endpoints_cb(const struct store_result *r, const struct store_count *rows,
				 size_t n, void *arg)
{
	(void)arg;
	(void)r;
	for (size_t i = 0; i < n; i++)
		log_warn(
		    "%" PRId64 " deliveries are queued for endpoint \"%s\", which is not"
		    " configured: they stay queued until it returns or an operator purges them",
		    rows[i].count, rows[i].endpoint);
}

static void schema_cb(const struct store_result *r, int version, void *arg)
{
	struct dispatcher *d = arg;
	if (r->status == STORE_LOST)
		return; /* checked again on reconnect */
	if (version < STORE_SCHEMA_VERSION) {
		char why[512];
		if (r->status == STORE_ERROR)
			snprintf(why, sizeof(why), "%s", r->error);
		else if (version < 0)
			snprintf(why, sizeof(why), "no version recorded");
		else
			snprintf(why, sizeof(why), "schema version %d", version);
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
	dispatcher_kick(d);
}

static void session_setup_cb(const struct store_result *r, void *arg)
{
	(void)arg;
	if (r->status == STORE_ERROR)
		log_warn("cannot set synchronous_commit = off and plan_cache_mode = "
			 "force_custom_plan (commits wait for the WAL flush): %s",
			 r->error);
}

/* Claims and settlements commit without waiting for the WAL flush (see
 * store_session_setup): a slow disk then delays producers, not deliveries.
 * Their prepared statements are planned for each run's values. */
void work_up_cb(void *arg)
{
	struct dispatcher *d = arg;
	if ((!d->pooled && store_session_setup(d->work, session_setup_cb, d) != 0) ||
	    store_schema_version(d->work, schema_cb, d) != 0)
		pgconn_reconnect(d->work);
}

void settle_up_cb(void *arg)
{
	struct dispatcher *d = arg;
	if (!d->pooled && store_session_setup(d->settle, session_setup_cb, d) != 0)
		pgconn_reconnect(d->settle);
	dispatcher_kick(d); /* settlements that waited for it */
}

void work_down_cb(void *arg)
{
	struct dispatcher *d = arg;
	d->schema_ok = false;
	d->claim_after = 0;
	mark_idle(d); /* no claims until it is back */
}

static void listen_result_cb(const struct store_result *r, void *arg)
{
	struct dispatcher *d = arg;
	if (r->status == STORE_LOST)
		return;
	if (r->status == STORE_ERROR) {
		log_error("LISTEN failed: %s", r->error);
		pgconn_reconnect(d->listen);
		return;
	}
	d->listening = true;
	pgconn_reset_backoff(d->listen);
	log_info("listening on channel " STORE_CHANNEL);
	/* Notifications sent while we were not listening are lost: catch up now. */
	d->want_new = d->want_retry = true;
	d->wakeups[WAKE_RECONNECT]++;
	dispatcher_kick(d);
}

void listen_up_cb(void *arg)
{
	struct dispatcher *d = arg;
	if (store_listen(d->listen, listen_result_cb, d) != 0)
		pgconn_reconnect(d->listen);
}

void listen_down_cb(void *arg)
{
	struct dispatcher *d = arg;
	d->listening = false;
	d->busy_lock = LOCK_NONE; /* released with the session */
}

void notify_cb(const char *channel, void *arg)
{
	(void)channel;
	struct dispatcher *d = arg;
	if (!d->want_new)
		d->wakeups[WAKE_NOTIFY]++; /* a burst of notifications is one wake-up */
	d->want_new = true;
	d->notifies++;
	dispatcher_kick(d);
}
