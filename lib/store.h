/* store: the dispatcher's SQL against notification_outbox and
 * notification_delivery, sent through a pgconn. Claims and lookups hand the
 * PGresult to the caller's callback (columns as in the enums below);
 * settlements are collected in a store_batch (store_batch_new/free) and sent
 * as one to three statements by store_settle(). */
#ifndef S3O_STORE_H
#define S3O_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pgconn.h"

#define STORE_SCHEMA_VERSION 1

/* Columns of a claim of new events and of a claim of due retries. */
enum store_col {
	STORE_COL_ID,	      /* outbox id, bigint */
	STORE_COL_TOKEN,      /* claim token, uuid */
	STORE_COL_EVENT_ID,   /* uuid */
	STORE_COL_TYPE,	      /* text */
	STORE_COL_SUBJECT,    /* text or NULL */
	STORE_COL_SOURCE,     /* text or NULL */
	STORE_COL_DATA,	      /* jsonb as text */
	STORE_COL_CREATED_US, /* microseconds since the epoch */
	STORE_COL_ENDPOINT,   /* retries only: endpoint name */
	STORE_COL_ATTEMPTS,   /* retries only: attempts made so far */
};

/* For a connection that claims or settles: its commits no longer wait for
 * the WAL flush. Only a PostgreSQL crash can lose such a commit (within
 * about 3 x wal_writer_delay), and a lost claim or settlement is made again:
 * a duplicate delivery, never a lost event. And its prepared statements are
 * planned at every run for the values given (plan_cache_mode =
 * force_custom_plan): a generic plan made while the outbox was empty stayed
 * a bad one once it filled. */
int store_session_setup(struct pgconn *c, pgconn_result_cb cb, void *arg)
    __attribute__((warn_unused_result));
/* One row: the highest applied schema version (the query fails when the
 * version table is missing). */
int store_schema_version(struct pgconn *c, pgconn_result_cb cb, void *arg)
    __attribute__((warn_unused_result));
/* Lease up to limit new events with an id above after_id for lease_ms. */
int store_claim_new(struct pgconn *c, unsigned limit, int64_t after_id, uint64_t lease_ms,
		    pgconn_result_cb cb, void *arg) __attribute__((warn_unused_result));
/* Lease due retries: up to limits[i] rows for endpoints[i]. */
int store_claim_retries(struct pgconn *c, const char *const *endpoints, const unsigned *limits,
			size_t n, uint64_t lease_ms, pgconn_result_cb cb, void *arg)
    __attribute__((warn_unused_result));
/* Rows (endpoint, count) of deliveries queued for endpoints not in the list. */
int store_unknown_endpoints(struct pgconn *c, const char *const *endpoints, size_t n,
			    pgconn_result_cb cb, void *arg) __attribute__((warn_unused_result));
/* One row: milliseconds until the next unleased retry of these endpoints is
 * due (0 when one already is), or NULL when there is none. */
int store_next_due(struct pgconn *c, const char *const *endpoints, size_t n, pgconn_result_cb cb,
		   void *arg) __attribute__((warn_unused_result));
/* One row: depth (new events + delivery rows), age in seconds of the oldest
 * queued event (0 when none), pg_notification_queue_usage(). */
int store_stats(struct pgconn *c, pgconn_result_cb cb, void *arg)
    __attribute__((warn_unused_result));
/* The busy lock of sql/004, on the connection that is to hold it: take it
 * without waiting (one row, 't' when taken; producers skip pg_notify while
 * it is held) or release it. */
int store_busy_lock(struct pgconn *c, bool take, pgconn_result_cb cb, void *arg)
    __attribute__((warn_unused_result));
/* Remove events whose every delivery is settled (left by concurrent settlements). */
int store_cleanup(struct pgconn *c, pgconn_result_cb cb, void *arg)
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
 * matches. The result has a row (id, endpoint or NULL for a new event) for
 * each row still ours; the others were claimed by someone else. */
int store_renew(struct pgconn *c, const struct store_batch *b, uint64_t lease_ms,
		pgconn_result_cb cb, void *arg) __attribute__((warn_unused_result));

#endif
