/* dispatcher_metrics: the database-wide gauges, refreshed once a second,
 * and the Prometheus text of every dispatcher metric. */
#include "dispatcher_int.h"

#include <stddef.h>
#include <stdlib.h>

#include "log.h"

static const char *const wakeup_names[WAKE_COUNT] = {"notify", "sweep", "reconnect", "retry"};

static const double duration_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
					 0.5,	1,    2.5,   5,	   10,	30};
static const double lag_bounds[] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,   2.5,
				    5,	  10,	 30,   60,  300,  900, 3600};

int dispatcher_histograms_init(struct dispatcher *d)
{
	if (histogram_init(&d->lag, lag_bounds, sizeof(lag_bounds) / sizeof(lag_bounds[0])) != 0)
		return -1;
	for (size_t i = 0; i < d->neps; i++)
		if (histogram_init(&d->eps[i].duration, duration_bounds,
				   sizeof(duration_bounds) / sizeof(duration_bounds[0])) != 0)
			return -1;
	return 0;
}

static void stats_result_cb(const struct store_result *r, const struct store_stats *st, void *arg)
{
	struct dispatcher *d = arg;
	d->stats_running = false;
	d->stats_valid = r->status == STORE_OK;
	if (d->stats_valid)
		d->stats = *st;
}

void stats_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct dispatcher *d = arg;
	if (d->stats_running || !pgconn_is_up(d->work) || !d->schema_ok)
		return;
	if (store_stats(d->work, stats_result_cb, d) == 0)
		d->stats_running = true;
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
		metrics_sample(out, "s3o_notification_outbox_depth", NULL, 0, d->stats.depth);
		metrics_header(out, "s3o_notification_oldest_pending_age_seconds",
			       "Age of the oldest event still queued (0 when none).", "gauge");
		metrics_sample(out, "s3o_notification_oldest_pending_age_seconds", NULL, 0,
			       d->stats.oldest_age);
		metrics_header(out, "s3o_notification_queue_usage",
			       "pg_notification_queue_usage(): when full, producers' commits fail.",
			       "gauge");
		metrics_sample(out, "s3o_notification_queue_usage", NULL, 0, d->stats.queue_usage);
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
