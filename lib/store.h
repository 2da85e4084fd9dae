/* store: every SQL text the daemon sends, against notification_outbox and
 * notification_delivery, through a pgconn. Queries answer through typed
 * callbacks: rows decoded (numbers checked), their strings valid during the
 * call only. Settlements are collected in a store_batch
 * (store_batch_new/free) and sent as one to four statements by
 * store_settle(). Every callback runs from the loop, never inside the call. */
#ifndef S3O_STORE_H
#define S3O_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pgconn.h"

#define STORE_SCHEMA_VERSION 1
/* The channel the producers' trigger notifies. */
#define STORE_CHANNEL "notification_outbox"
/* The busy lock's advisory-lock key as SQL arguments, the same as in the
 * trigger's WHEN (sql/001_schema.sql): 1395806030 is 'S3ON' in ASCII, and
 * the second half the outbox's oid. */
#define STORE_BUSY_LOCK_ARGS "1395806030, 'notification_outbox'::regclass::oid::int"

/* The highest applied schema version: one row, one column, NULL when none
 * (the query fails when the version table is missing). The CLI runs it too. */
extern const char store_sql_schema_version[];

/* What became of a query. On STORE_LOST (the connection went down first)
 * and STORE_ERROR no rows are given. */
enum store_status { STORE_OK, STORE_ERROR, STORE_LOST };
struct store_result {
	enum store_status status;
	const char *error; /* STORE_ERROR: the first line of the server's message */
};
typedef void (*store_done_cb)(const struct store_result *r, void *arg);

/* A claimed row: a new event, or a due retry of one endpoint's delivery. */
struct store_row {
	int64_t id;	      /* outbox id */
	const char *token;    /* claim token */
	const char *event_id; /* uuid */
	const char *type;
	const char *subject; /* NULL when NULL */
	const char *source;  /* NULL: the daemon's own */
	const char *data;    /* jsonb as text */
	size_t data_len;
	int64_t created_us;   /* microseconds since the epoch */
	const char *endpoint; /* retries only, else NULL */
	int attempts;	      /* retries only: attempts made so far */
};
typedef void (*store_rows_cb)(const struct store_result *r, const struct store_row *rows, size_t n,
			      void *arg);

/* For a connection that claims or settles: its commits no longer wait for
 * the WAL flush. Only a PostgreSQL crash can lose such a commit (within
 * about 3 x wal_writer_delay), and a lost claim or settlement is made again:
 * a duplicate delivery, never a lost event. And its prepared statements are
 * planned at every run for the values given (plan_cache_mode =
 * force_custom_plan): a generic plan made while the outbox was empty stayed
 * a bad one once it filled. */
int store_session_setup(struct pgconn *c, store_done_cb cb, void *arg)
    __attribute__((warn_unused_result));
/* LISTEN on STORE_CHANNEL. */
int store_listen(struct pgconn *c, store_done_cb cb, void *arg) __attribute__((warn_unused_result));
/* version is -1 when none is recorded. */
typedef void (*store_version_cb)(const struct store_result *r, int version, void *arg);
int store_schema_version(struct pgconn *c, store_version_cb cb, void *arg)
    __attribute__((warn_unused_result));
/* Lease up to limit new events with an id above after_id for lease_ms. */
int store_claim_new(struct pgconn *c, unsigned limit, int64_t after_id, uint64_t lease_ms,
		    store_rows_cb cb, void *arg) __attribute__((warn_unused_result));
/* Lease due retries: up to limits[i] rows for endpoints[i]. */
int store_claim_retries(struct pgconn *c, const char *const *endpoints, const unsigned *limits,
			size_t n, uint64_t lease_ms, store_rows_cb cb, void *arg)
    __attribute__((warn_unused_result));
/* Deliveries queued for endpoints not in the list, counted per endpoint. */
struct store_count {
	const char *endpoint;
	int64_t count;
};
typedef void (*store_counts_cb)(const struct store_result *r, const struct store_count *rows,
				size_t n, void *arg);
int store_unknown_endpoints(struct pgconn *c, const char *const *endpoints, size_t n,
			    store_counts_cb cb, void *arg) __attribute__((warn_unused_result));
/* Milliseconds until the next unleased retry of these endpoints is due (0
 * when one already is); pending is false when there is none. */
typedef void (*store_due_cb)(const struct store_result *r, bool pending, uint64_t ms, void *arg);
int store_next_due(struct pgconn *c, const char *const *endpoints, size_t n, store_due_cb cb,
		   void *arg) __attribute__((warn_unused_result));
/* The database-wide gauges. */
struct store_stats {
	double depth;	    /* new events + delivery rows */
	double oldest_age;  /* seconds, of the oldest queued event (0 when none) */
	double queue_usage; /* pg_notification_queue_usage() */
};
typedef void (*store_stats_cb)(const struct store_result *r, const struct store_stats *s,
			       void *arg);
int store_stats(struct pgconn *c, store_stats_cb cb, void *arg) __attribute__((warn_unused_result));
/* The busy lock (see docs/design.md), on the connection that is to hold it:
 * take it without waiting (taken: producers skip pg_notify while it is
 * held), or release it (taken: it was held). */
typedef void (*store_lock_cb)(const struct store_result *r, bool taken, void *arg);
int store_busy_lock(struct pgconn *c, bool take, store_lock_cb cb, void *arg)
    __attribute__((warn_unused_result));
/* Remove events whose every delivery is settled (left by concurrent settlements). */
int store_cleanup(struct pgconn *c, store_done_cb cb, void *arg)
    __attribute__((warn_unused_result));

struct store_batch;
struct store_batch *store_batch_new(void) __attribute__((warn_unused_result));
void store_batch_free(struct store_batch *b);
bool store_batch_empty(const struct store_batch *b);
/* Smallest delay_ms of the retries in the batch, UINT64_MAX when none. */
uint64_t store_batch_min_delay(const struct store_batch *b);

/* A new event every endpoint is done with: delete it. */
void store_batch_new_done(struct store_batch *b, int64_t id, const char *token);
/* A new event nobody attempted (shutdown): release its lease. */
void store_batch_new_release(struct store_batch *b, int64_t id, const char *token);
/* A new event with deliveries left: keep it and add one row per endpoint
 * still owed it (error NULL = none yet). */
void store_batch_new_fanout(struct store_batch *b, int64_t id, const char *token);
void store_batch_fanout_row(struct store_batch *b, int64_t id, const char *endpoint, int attempts,
			    uint64_t delay_ms, const char *error);
/* A retried delivery delivered or dropped: delete it (and the event when it was the last). */
void store_batch_retry_done(struct store_batch *b, int64_t id, const char *endpoint,
			    const char *token);
/* A retried delivery to try again after delay_ms (error NULL keeps the old one). */
void store_batch_retry_again(struct store_batch *b, int64_t id, const char *endpoint,
			     const char *token, int attempts, uint64_t delay_ms, const char *error);

/* Rows still being worked on: extend their leases (store_renew, not settle). */
void store_batch_renew_new(struct store_batch *b, int64_t id, const char *token);
void store_batch_renew_retry(struct store_batch *b, int64_t id, const char *endpoint,
			     const char *token);

/* Send the batch; cb(ok, arg) once when every statement has finished, from
 * the loop. Fails (-1, and no callback) when nothing could be queued. The
 * batch must stay unchanged until then; sending it again is harmless. */
typedef void (*store_settle_cb)(bool ok, void *arg);
int store_settle(struct pgconn *c, const struct store_batch *b, store_settle_cb cb, void *arg)
    __attribute__((warn_unused_result));

/* Send the batch's renewals: leases to now + lease_ms where the token still
 * matches. The rows given are those still ours (endpoint NULL for a new
 * event); the others were claimed by someone else. */
struct store_renewed {
	int64_t id;
	const char *endpoint;
};
typedef void (*store_renewed_cb)(const struct store_result *r, const struct store_renewed *rows,
				 size_t n, void *arg);
int store_renew(struct pgconn *c, const struct store_batch *b, uint64_t lease_ms,
		store_renewed_cb cb, void *arg) __attribute__((warn_unused_result));

#endif
